"""Per-head max attention logits of a model's training forward passes, captured through transformers' attention
interface (imported only here, and this module only when ``qk_clip > 0``).

:class:`LogitMax` registers an attention function ``hf_muon_qk_clip_<base>`` that wraps the model's configured
implementation ``<base>`` (``eager``, ``sdpa``, ``flash_attention_*``, ``flex_attention``; its mask function is
registered under the same name, so masks are built exactly as for ``<base>``) and switches the model to it with
``set_attn_implementation``. The wrapper records, for each watched attention module in training mode, the max
over the batch, the query and the visible keys of ``q·kᵀ·scaling`` per query head (after RoPE, before the mask
and softmax: the logit Kimi K2 clips), as a running max on the device (no host sync) until :meth:`take`.
Modules not watched (heads not on Muon) and eval-mode forwards go straight to ``<base>``.

What the max costs, by implementation:

* ``eager`` (the standard eager of Llama-style models: the model's ``eager_attention_forward`` has the same
  bytecode as Llama's): **no extra matmul**. The wrapper runs that eager computation itself (same ops, same
  order: output and weights bit-identical to eager) and takes the max of the logits it already holds.
* ``sdpa``, ``flash_attention_*``, ``flex_attention``, and eager functions that differ from Llama's (GPT-2's,
  soft-capped or sink variants): the kernel never returns the logits (flash's log-sum-exp would give only an
  upper bound, max ≤ LSE ≤ max + log S_k), so the max costs **one extra q·kᵀ per layer**, no grad, chunked over
  queries (≤ 16M logits at a time): about 1/6 of attention's matmul FLOPs per training step (forward q·kᵀ and
  P·V, backward four), only while QK-Clip is on. Padding and causal masks are honoured (4-D bool or additive
  masks, 2-D padding masks, or causal when no mask is passed); flex's ``BlockMask`` is refused.
"""

from __future__ import annotations

import sys
import weakref

import torch
from torch import nn

PREFIX = "hf_muon_qk_clip_"
CHUNK = 1 << 24
_TRACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # attention module -> (LogitMax, slot)


def _llama_eager():
    from transformers.models.llama import modeling_llama

    return modeling_llama.eager_attention_forward, modeling_llama.repeat_kv


def _same_code(f, g) -> bool:
    a, b = getattr(f, "__code__", None), getattr(g, "__code__", None)
    return (
        a is not None and b is not None and (a.co_code, a.co_names, a.co_consts) == (b.co_code, b.co_names, b.co_consts)
    )


def _eager_of(module: nn.Module):
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        raise ValueError(f"qk_clip: {type(module).__name__} has no module-level eager_attention_forward to wrap")
    return fn


def _keep(mask, q_len: int, k_len: int, causal: bool, device) -> torch.Tensor | None:
    """Visible (query, key) pairs as a bool tensor broadcastable to (B, H, Sq, Sk); None: all visible."""
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"qk_clip: cannot read a {type(mask).__name__} attention mask (flex_attention's BlockMask); "
            "use eager or sdpa attention with QK-Clip"
        )
    if mask is not None and mask.ndim == 4:
        mask = mask[..., :k_len]
        return mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    keep = None
    if causal and q_len > 1:
        q = torch.arange(q_len, device=device).unsqueeze(1) + (k_len - q_len)
        keep = (torch.arange(k_len, device=device).unsqueeze(0) <= q)[None, None]
    if mask is not None:  # a 2-D (B, Sk) padding mask (flash attention)
        pad = mask[:, None, None, -k_len:].bool()
        keep = pad if keep is None else keep & pad
    return keep


@torch.no_grad()
def max_logits(query, key, mask, scaling: float, causal: bool) -> torch.Tensor:
    """max over batch, queries and visible keys of ``q·kᵀ·scaling`` per query head: (H,) float32.
    ``query`` (B, H, Sq, D), ``key`` (B, KV, Sk, D) with H a multiple of KV (query head h reads kv head h // G)."""
    B, H, Sq, D = query.shape
    KV, Sk = key.shape[1], key.shape[2]
    q = query.reshape(B, KV, H // KV, Sq, D)
    kt = key.unsqueeze(2).transpose(-1, -2)  # (B, KV, 1, D, Sk)
    keep = _keep(mask, Sq, Sk, causal, query.device)
    if keep is not None:
        keep = keep.unsqueeze(2) if keep.shape[1] == 1 else keep.reshape(keep.shape[0], KV, H // KV, *keep.shape[2:])
    step = max(1, CHUNK // max(1, B * H * Sk))
    out = torch.full((KV, H // KV), float("-inf"), device=query.device)
    for i in range(0, Sq, step):
        s = (q[:, :, :, i : i + step] @ kt).float() * scaling
        if keep is not None:
            s = s.masked_fill(~keep[..., i : i + step, :], float("-inf"))
        out = torch.maximum(out, s.amax(dim=(0, 3, 4)))
    return out.reshape(H)


def _eager_with_max(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Llama's eager attention, step for step, returning also the per-head max of its logits."""
    _, repeat_kv = _llama_eager()
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
        peak = attn_weights.detach().amax(dim=(0, 2, 3)).float()  # the mask adds 0 where visible
    else:
        keep = _keep(None, query.shape[2], key.shape[2], getattr(module, "is_causal", True), query.device)
        w = attn_weights.detach()
        peak = (w if keep is None else w.masked_fill(~keep, float("-inf"))).amax(dim=(0, 2, 3)).float()
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    return (attn_output.transpose(1, 2).contiguous(), attn_weights), peak


def _wrapper(base_name: str):
    def attention(module, query, key, value, attention_mask, **kwargs):
        if base_name == "eager":
            base = _eager_of(module)
        else:
            from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

            base = ALL_ATTENTION_FUNCTIONS[base_name]
        entry = _TRACKED.get(module)
        if entry is None or not module.training:
            return base(module, query, key, value, attention_mask, **kwargs)
        tracker, slot = entry
        scaling = kwargs.get("scaling")
        if scaling is None:
            scaling = getattr(module, "scaling", None) or query.shape[-1] ** -0.5
        if base_name == "eager" and _same_code(base, _llama_eager()[0]):
            out, peak = _eager_with_max(module, query, key, value, attention_mask, **kwargs)
        else:
            causal = kwargs.get("is_causal")
            causal = getattr(module, "is_causal", True) if causal is None else causal
            peak = max_logits(query, key, attention_mask, float(scaling), bool(causal))
            out = base(module, query, key, value, attention_mask, **kwargs)
        tracker.record(slot, peak)
        return out

    return attention


def _register(base_name: str) -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    name = PREFIX + base_name
    AttentionInterface.register(name, _wrapper(base_name))
    mask_fn = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get(base_name)
    if mask_fn is not None:
        AttentionMaskInterface.register(name, mask_fn)
    return name


class LogitMax:
    """Running per-head max logits of ``modules`` (slot i: a (heads,) float32 tensor, or None before a forward)."""

    def __init__(self, model: nn.Module, modules: list[nn.Module]):
        config = getattr(model, "config", None)
        current = getattr(config, "_attn_implementation", None)
        if current is None or not hasattr(model, "set_attn_implementation"):
            raise ValueError(
                "qk_clip needs a transformers model (PreTrainedModel) whose attention goes through the "
                "attention interface"
            )
        self.model, self.base = model, current.removeprefix(PREFIX)
        model.set_attn_implementation(_register(self.base))
        self.values: list[torch.Tensor | None] = [None] * len(modules)
        for i, mod in enumerate(modules):
            _TRACKED[mod] = (self, i)
        self._modules = modules

    def record(self, slot: int, peak: torch.Tensor) -> None:
        prev = self.values[slot]
        self.values[slot] = peak if prev is None else torch.maximum(prev, peak)

    def take(self) -> list[torch.Tensor | None]:
        """The maxima since the last take (None for modules not run), and reset."""
        out, self.values = self.values, [None] * len(self.values)
        return out

    def remove(self) -> None:
        """Stop capturing and give the model back its own attention implementation."""
        for mod in self._modules:
            if _TRACKED.get(mod, (None,))[0] is self:
                del _TRACKED[mod]
        self.model.set_attn_implementation(self.base)


__all__ = ["LogitMax", "max_logits"]
