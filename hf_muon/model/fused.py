"""Fused projections: orthogonalize each logical matrix of a fused weight on its own.

Several architectures store more than one linear map in one weight: Phi-3 ``qkv_proj`` ``(q + 2·kv, H)`` and
``gate_up_proj`` ``(2I, H)``, GPT-2 ``c_attn`` (``Conv1D``, stored ``(H, 3H)``), GPT-NeoX ``query_key_value``
``(3H, H)`` whose output rows are interleaved per head (``[q_h, k_h, v_h]`` for each head h), and MoE expert
stacks ``gate_up_proj`` ``(E, 2I, H)`` (GPT-OSS: ``(E, H, 2I)`` with gate/up in alternating columns).
Orthogonalizing the fused matrix as a whole couples the blocks: the update's singular directions mix Q with
K and V, and the scale follows the fused shape. With ``split_fused=True`` (opt-in, like dion's
``split_sizes`` and Megatron's QKV split, but derived from the HF config) each block is orthogonalized and
scaled as the separate matrix it is, so a fused model gets the update its unfused twin would get.

The split itself (axis, sizes, per-head groups) and the block/assemble math live in
:mod:`hf_muon.ns.blocks`; this module decides, from the HF config, which weights are fused and how.

Other fused outputs are found from the model's own code: a weight whose output the module cuts with
``.chunk(k, dim=-1)`` is split into those k blocks (:mod:`hf_muon.model.usage`; JetMoE's fused GLU
``input_linear`` and ``kv_proj``), and an expert ``gate_up_proj`` cut with ``chunk`` is ``[gate | up]`` (Llama-4,
Aria), with ``[..., ::2]`` alternating (GPT-OSS). Architectures with a fused layout not listed here (e.g. Falcon's ``query_key_value``, whose layout depends
on several config flags) are left whole and the routing report says so.
"""

from __future__ import annotations

import torch

from ..ns.blocks import Split


# ------------------------------------------------------------------------------------------ detection
def _cfg(config, *names, default=None):
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int) and v > 0:
            return v
    return default


def detect(
    name: str, mod, p: torch.Tensor, config, *, transposed: bool, experts: bool, blocks: tuple[str, int] | None = None
) -> tuple[Split | None, str]:
    """The split of a Muon-routed weight (None when it is not a known fused projection) and a note. ``blocks``:
    how the model's code cuts this weight's output (:func:`hf_muon.model.usage.output_blocks`), which decides
    an expert ``gate_up_proj``'s layout and finds fused outputs of any other name."""
    leaf = name.rsplit(".", 2)[-2] if name.endswith(".weight") else name.rsplit(".", 1)[-1]
    model_type = getattr(config, "model_type", "") or ""
    hidden = _cfg(config, "hidden_size", "n_embd")
    heads = _cfg(config, "num_attention_heads", "n_head")
    kv_heads = _cfg(config, "num_key_value_heads", default=heads)
    head_dim = _cfg(config, "head_dim", default=(hidden // heads if hidden and heads else None))
    shape = tuple(p.shape)

    def fits(split: Split) -> Split | None:
        return split if len(shape) >= 2 and shape[split.axis] == split.length else None

    if leaf == "c_attn" and transposed and hidden and shape[-1] % hidden == 0:  # GPT-2 Conv1D (H, k·H)
        k = shape[-1] // hidden
        s = fits(Split(-1, (hidden,) * k, 1, "qkv" if k == 3 else "kv"))
        return (s, "") if s else (None, "c_attn of unexpected shape: kept whole")
    if leaf == "qkv_proj" and heads and head_dim and not transposed:  # Phi-3 style block layout
        s = fits(Split(-2, (heads * head_dim, kv_heads * head_dim, kv_heads * head_dim), 1, "qkv"))
        return (s, "") if s else (None, "qkv_proj of unexpected shape: kept whole")
    if leaf == "query_key_value":
        if model_type == "gpt_neox" and heads and head_dim and not transposed:  # per-head [q, k, v]
            s = fits(Split(-2, (head_dim, head_dim, head_dim), heads, "qkv"))
            return (s, "") if s else (None, "query_key_value of unexpected shape: kept whole")
        return None, f"fused query_key_value of model_type {model_type!r}: layout not known, kept whole"
    if leaf == "gate_up_proj":
        if experts and transposed and blocks == ("contiguous", 2):  # Llama-4 / Aria (E, H, 2I): [gate | up]
            s = fits(Split(-1, (shape[-1] // 2, shape[-1] // 2), 1, "gate_up")) if shape[-1] % 2 == 0 else None
        elif experts and transposed:  # GPT-OSS (E, H, 2I): gate/up in alternating columns
            s = fits(Split(-1, (1, 1), shape[-1] // 2, "gate_up")) if shape[-1] % 2 == 0 else None
        else:  # Phi-3 Linear (2I, H) and v5 MoE experts (E, 2I, H): [gate; up]
            s = fits(Split(-2, (shape[-2] // 2, shape[-2] // 2), 1, "gate_up")) if shape[-2] % 2 == 0 else None
        return (s, "") if s else (None, "gate_up_proj of unexpected shape: kept whole")
    if blocks is not None and blocks[0] == "contiguous" and len(shape) >= 2:  # e.g. JetMoE's input_linear, kv_proj
        axis, k = (-1 if transposed else -2), blocks[1]
        s = fits(Split(axis, (shape[axis] // k,) * k, 1, f"{k} blocks")) if shape[axis] % k == 0 else None
        return (s, "output cut into blocks by the model's code") if s else (None, "")
    return None, ""


__all__ = ["detect"]
