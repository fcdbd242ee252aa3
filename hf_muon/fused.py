"""Fused projections: orthogonalize each logical matrix of a fused weight on its own.

Several architectures store more than one linear map in one weight: Phi-3 ``qkv_proj`` ``(q + 2·kv, H)`` and
``gate_up_proj`` ``(2I, H)``, GPT-2 ``c_attn`` (``Conv1D``, stored ``(H, 3H)``), GPT-NeoX ``query_key_value``
``(3H, H)`` whose output rows are interleaved per head (``[q_h, k_h, v_h]`` for each head h), and MoE expert
stacks ``gate_up_proj`` ``(E, 2I, H)`` (GPT-OSS: ``(E, H, 2I)`` with gate/up in alternating columns).
Orthogonalizing the fused matrix as a whole couples the blocks: the update's singular directions mix Q with
K and V, and the scale follows the fused shape. With ``split_fused=True`` (opt-in, like dion's
``split_sizes`` and Megatron's QKV split, but derived from the HF config) each block is orthogonalized and
scaled as the separate matrix it is, so a fused model gets the update its unfused twin would get.

A split is described along one axis of the stored matrix (the last two dims of the weight): ``axis`` -2
(rows) or -1 (columns), block ``sizes`` along it, and ``groups`` > 1 when the axis is laid out as
``(groups, sum(sizes))`` (per-head interleaving: block i is the i-th slice of every group). Split specs live
in the optimizer's param groups as plain dicts (``{"axis", "sizes", "groups", "label"}``) so checkpoints
load with ``torch.load(weights_only=True)``.

Architectures with a fused layout not listed here (e.g. Falcon's ``query_key_value``, whose layout depends
on several config flags) are left whole and the routing report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    axis: int  # -2: rows of the stored matrix, -1: columns
    sizes: tuple[int, ...]
    groups: int = 1
    label: str = ""

    @classmethod
    def from_spec(cls, spec: dict | Split | None) -> Split | None:
        if spec is None or isinstance(spec, Split):
            return spec
        return cls(int(spec["axis"]), tuple(int(s) for s in spec["sizes"]), int(spec.get("groups", 1)),
                   str(spec.get("label", "")))

    def spec(self) -> dict:
        """The plain-dict form stored in param groups (weights_only-safe)."""
        return {"axis": self.axis, "sizes": list(self.sizes), "groups": self.groups, "label": self.label}

    @property
    def length(self) -> int:
        return self.groups * sum(self.sizes)

    def describe(self) -> str:
        inner = "+".join(str(s) for s in self.sizes)
        where = "rows" if self.axis == -2 else "columns"
        return (f"{self.label + ': ' if self.label else ''}{where} {inner}"
                + (f" interleaved over {self.groups} groups" if self.groups > 1 else ""))

    def check(self, shape, name: str = "parameter") -> None:
        if len(shape) < 2 or shape[self.axis] != self.length:
            raise ValueError(f"split_fused: {name!r} has shape {tuple(shape)}, but its split ({self.describe()}) needs "
                             f"{self.length} along axis {self.axis}")

    def block_shapes(self, shape) -> list[tuple[int, ...]]:
        out = []
        for s in self.sizes:
            b = list(shape)
            b[self.axis] = self.groups * s
            out.append(tuple(b))
        return out


def _grouped(t: torch.Tensor, split: Split) -> torch.Tensor:
    """``t`` with ``split.axis`` viewed as ``(groups, sum(sizes))``."""
    if split.axis == -2:
        return t.unflatten(-2, (split.groups, sum(split.sizes)))  # (..., G, S, C)
    return t.unflatten(-1, (split.groups, sum(split.sizes)))  # (..., R, G, S)


def blocks(t: torch.Tensor, split: Split) -> list[torch.Tensor]:
    """The logical matrices of a fused ``t`` (..., R, C): views when ``groups == 1``, copies otherwise."""
    g = _grouped(t, split)
    dim = -2 if split.axis == -2 else -1
    out, start = [], 0
    for s in split.sizes:
        b = g.narrow(dim, start, s)  # (..., G, s, C) or (..., R, G, s)
        out.append(b.flatten(-3, -2) if split.axis == -2 else b.flatten(-2, -1))
        start += s
    return out


def assemble(results: list[torch.Tensor], split: Split, shape, ratios=None) -> torch.Tensor:
    """Inverse of :func:`blocks`: write each block result (times its ratio) back into a tensor of ``shape``."""
    out = torch.empty(shape, dtype=results[0].dtype, device=results[0].device)
    g = _grouped(out, split)
    dim = -2 if split.axis == -2 else -1
    start = 0
    for i, (s, r) in enumerate(zip(split.sizes, results)):
        dst = g.narrow(dim, start, s)
        src = r.unflatten(-2, (split.groups, s)) if split.axis == -2 else r.unflatten(-1, (split.groups, s))
        if ratios is not None and ratios[i] != 1.0:
            torch.mul(src, ratios[i], out=dst)  # dst is a strided view of `out`: written in place
        else:
            dst.copy_(src)
        start += s
    return out


# ------------------------------------------------------------------------------------------ detection
def _cfg(config, *names, default=None):
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int) and v > 0:
            return v
    return default


def detect(name: str, mod, p: torch.Tensor, config, *, transposed: bool, experts: bool) -> tuple[Split | None, str]:
    """The split of a Muon-routed weight (None when it is not a known fused projection) and a note."""
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
        if experts and transposed:  # GPT-OSS (E, H, 2I): gate/up in alternating columns
            s = fits(Split(-1, (1, 1), shape[-1] // 2, "gate_up")) if shape[-1] % 2 == 0 else None
        else:  # Phi-3 Linear (2I, H) and v5 MoE experts (E, 2I, H): [gate; up]
            s = fits(Split(-2, (shape[-2] // 2, shape[-2] // 2), 1, "gate_up")) if shape[-2] % 2 == 0 else None
        return (s, "") if s else (None, "gate_up_proj of unexpected shape: kept whole")
    return None, ""


__all__ = ["Split", "assemble", "blocks", "detect"]
