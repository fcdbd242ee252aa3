"""Attention heads of an HF model: the head layout from its config, per-head splits of q/k/v weights
(``per_head=True``) and the attention sites QK-Clip scales (``qk_clip=τ``).

Layout facts come from the model config (``num_attention_heads`` / ``n_head`` / ``num_heads``,
``num_key_value_heads`` for GQA, ``head_dim`` / ``d_kv`` or ``hidden // heads``), never from guessing at shapes;
a weight whose shape does not fit its layout is left whole and the routing report says so. Head h of a
projection is the h-th block of ``head_dim`` output features, wherever the layout stores them:

==========================  =========================  ===========================================================
weight                      stored                     head blocks (output axis)
==========================  =========================  ===========================================================
``q_proj`` / ``query``      ``(H·d, hidden)``          rows ``[h·d, (h+1)·d)``; ``k_proj``/``v_proj``: KV heads
Phi-3 ``qkv_proj``          ``(H·d + 2·KV·d, hidden)`` rows: the H q heads, then the KV k heads, then the KV v heads
GPT-NeoX ``query_key_value`` ``(3·H·d, hidden)``       rows per head ``[q_h, k_h, v_h]``: 3·H blocks of d rows
GPT-2 ``c_attn`` (Conv1D)   ``(hidden, 3·H·d)``        columns: H q heads, H k heads, H v heads
==========================  =========================  ===========================================================

A per-head split is a :class:`~hf_muon.ns.blocks.Split` of ``head_dim``-sized blocks along the output axis, so
the NS engine batches every head of every layer as one stack of ``(d, hidden)`` matrices and scales each as
the separate matrix it is (the machinery of ``split_fused``).

Multi-head latent attention (DeepSeek-V2/V3, Kimi K2: ``kv_lora_rank`` in the config, ``q_b_proj`` /
``kv_b_proj``) has low-rank factors whose rows are not heads and a rotary key shared by every head; Kimi K2's
QK-Clip scales the head-specific parts q_C, k_C by √γ_h, the head-specific rotary query q_R by γ_h and leaves
the shared rotary key untouched. hf_muon does not implement that layout: ``per_head`` and ``qk_clip`` refuse
MLA models with an error instead of treating the factors as heads. Models that normalize q/k after the
projection (``q_norm`` / ``k_norm``: Qwen3, OLMo-2, Gemma-3) are refused by ``qk_clip``: scaling W_q, W_k does
not change their logits (the norm's gain does), so the clip would be a silent no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..ns.blocks import Split

Q_LEAVES = {"q_proj": "q", "query": "q", "k_proj": "k", "key": "k", "v_proj": "v", "value": "v"}
FUSED_LEAVES = ("qkv_proj", "query_key_value", "c_attn")


@dataclass(frozen=True)
class Heads:
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 for MHA)."""
        return self.heads // self.kv_heads


def _cfg(config, *names):
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def heads_of(config) -> Heads | None:
    """The head layout of an HF config (its text config for multimodal ones), or None when it has none."""
    config = getattr(config, "text_config", None) or config
    heads = _cfg(config, "num_attention_heads", "n_head", "num_heads")
    if config is None or heads is None:
        return None
    kv = _cfg(config, "num_key_value_heads") or heads
    hidden = _cfg(config, "hidden_size", "n_embd", "d_model")
    d = _cfg(config, "head_dim", "d_kv") or (hidden // heads if hidden and hidden % heads == 0 else None)
    if d is None or heads % kv:
        return None
    return Heads(heads, kv, d)


def is_mla(config) -> bool:
    config = getattr(config, "text_config", None) or config
    return getattr(config, "kv_lora_rank", None) is not None


def refuse_mla(config, knob: str) -> None:
    if is_mla(config):
        raise ValueError(
            f"{knob}: model_type {getattr(config, 'model_type', '?')!r} uses multi-head latent attention (MLA: "
            "q_b_proj / kv_b_proj factors and one rotary key shared by all heads). hf_muon does not implement MLA's "
            "head layout (Kimi K2 scales q_C, k_C by √γ, the rotary q_R by γ and leaves the shared k_R alone); "
            f"set {knob} off for this model."
        )


def _leaf(name: str) -> str:
    return name.rsplit(".", 2)[-2] if name.endswith(".weight") else name.rsplit(".", 1)[-1]


def head_split(name: str, p: torch.Tensor, config, *, transposed: bool, experts: bool) -> tuple[Split | None, str]:
    """The per-head split of a Muon weight (None when it is not an attention projection) and a note."""
    leaf = _leaf(name)
    if experts or (leaf not in Q_LEAVES and leaf not in FUSED_LEAVES):
        return None, ""
    h = heads_of(config)
    if h is None:
        return None, "per_head: no head layout in the model config, kept whole"
    axis = -1 if transposed else -2
    model_type = getattr(config, "model_type", "") or ""
    if leaf in Q_LEAVES:
        n = h.heads if Q_LEAVES[leaf] == "q" else h.kv_heads
    elif leaf == "qkv_proj" and not transposed:
        n = h.heads + 2 * h.kv_heads
    elif leaf == "query_key_value" and model_type == "gpt_neox" and not transposed:
        n = 3 * h.heads
    elif leaf == "c_attn" and transposed and h.kv_heads == h.heads:
        n = 3 * h.heads
    else:
        return None, f"per_head: layout of {leaf} (model_type {model_type!r}) not known, kept whole"
    if p.shape[axis] != n * h.head_dim:
        return None, f"per_head: {leaf} of shape {tuple(p.shape)} is not {n} heads of {h.head_dim}, kept whole"
    return Split(axis, (h.head_dim,) * n, 1, "heads"), ""


# ------------------------------------------------------------------------------------------ QK-Clip sites
@dataclass
class Side:
    """Where the q (or k) heads of a site live: ``owner.weight`` along ``axis``; ``index[h]`` its head-h slots."""

    owner: nn.Module
    axis: int
    index: torch.Tensor  # (n_heads, head_dim) long

    @property
    def weight(self) -> torch.Tensor:
        return self.owner.weight


@dataclass
class Site:
    """One attention module QK-Clip watches: its name, the module the attention interface receives, the head
    layout and the q / k sides."""

    name: str
    module: nn.Module
    heads: Heads
    q: Side
    k: Side


def _rows(start: int, n: int, d: int, stride: int | None = None) -> torch.Tensor:
    stride = d if stride is None else stride
    return start + (torch.arange(n) * stride).unsqueeze(1) + torch.arange(d)


def _site(name: str, mod: nn.Module, h: Heads, model_type: str) -> Site | None:
    d, H, KV = h.head_dim, h.heads, h.kv_heads
    children = dict(mod.named_children())
    for q_leaf, k_leaf in (("q_proj", "k_proj"), ("query", "key")):
        q, k = children.get(q_leaf), children.get(k_leaf)
        if isinstance(q, nn.Linear) and isinstance(k, nn.Linear):
            if q.out_features == H * d and k.out_features == KV * d:
                return Site(name, mod, h, Side(q, -2, _rows(0, H, d)), Side(k, -2, _rows(0, KV, d)))
            return None
    fused = children.get("qkv_proj")
    if isinstance(fused, nn.Linear) and fused.out_features == (H + 2 * KV) * d:
        return Site(name, mod, h, Side(fused, -2, _rows(0, H, d)), Side(fused, -2, _rows(H * d, KV, d)))
    fused = children.get("query_key_value")
    if model_type == "gpt_neox" and isinstance(fused, nn.Linear) and fused.out_features == 3 * H * d:
        return Site(name, mod, h, Side(fused, -2, _rows(0, H, d, 3 * d)), Side(fused, -2, _rows(d, H, d, 3 * d)))
    fused = children.get("c_attn")
    if fused is not None and type(fused).__name__ == "Conv1D" and fused.weight.shape[-1] == 3 * H * d and KV == H:
        return Site(name, mod, h, Side(fused, -1, _rows(0, H, d)), Side(fused, -1, _rows(H * d, H, d)))
    return None


def attention_sites(model: nn.Module) -> list[Site]:
    """Every self-attention module of ``model`` with a known q/k layout (cross-attention ``q_attn`` excluded)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    refuse_mla(config, "qk_clip")
    h = heads_of(config)
    if h is None:
        return []
    model_type = getattr(config, "model_type", "") or ""
    sites = []
    for name, mod in model.named_modules():
        if getattr(mod, "is_cross_attention", False):
            continue
        site = _site(name, mod, h, model_type)
        if site is None:
            continue
        norms = [
            n
            for n in ("q_norm", "k_norm", "q_layernorm", "k_layernorm")
            if isinstance(getattr(mod, n, None), nn.Module)
        ]
        if norms:
            raise ValueError(
                f"qk_clip: {name!r} normalizes q/k after the projection ({', '.join(norms)}): scaling "
                "W_q and W_k does not change its logits, so QK-Clip would do nothing (QK-norm already "
                "bounds them). Set qk_clip=0 for this model."
            )
        sites.append(site)
    return sites


__all__ = ["Heads", "Side", "Site", "attention_sites", "head_split", "heads_of", "is_mla", "refuse_mla"]
