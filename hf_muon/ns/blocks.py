"""Block splits of a fused weight: the logical matrices inside one stored matrix, and back.

A split is described along one axis of the stored matrix (the last two dims of the weight): ``axis`` -2
(rows) or -1 (columns), block ``sizes`` along it, and ``groups`` > 1 when the axis is laid out as
``(groups, sum(sizes))`` (per-head interleaving: block i is the i-th slice of every group). Split specs live
in the optimizer's param groups as plain dicts (``{"axis", "sizes", "groups", "label"}``) so checkpoints
load with ``torch.load(weights_only=True)``. Which weights are fused, and how, is decided from the model
config in :mod:`hf_muon.model.fused`; this module is only the layout math the NS engine needs.
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
        return cls(
            int(spec["axis"]),
            tuple(int(s) for s in spec["sizes"]),
            int(spec.get("groups", 1)),
            str(spec.get("label", "")),
        )

    def spec(self) -> dict:
        """The plain-dict form stored in param groups (weights_only-safe)."""
        return {"axis": self.axis, "sizes": list(self.sizes), "groups": self.groups, "label": self.label}

    @property
    def length(self) -> int:
        return self.groups * sum(self.sizes)

    def describe(self) -> str:
        inner = "+".join(str(s) for s in self.sizes)
        where = "rows" if self.axis == -2 else "columns"
        return f"{self.label + ': ' if self.label else ''}{where} {inner}" + (
            f" interleaved over {self.groups} groups" if self.groups > 1 else ""
        )

    def check(self, shape, name: str = "parameter") -> None:
        if len(shape) < 2 or shape[self.axis] != self.length:
            raise ValueError(
                f"split_fused: {name!r} has shape {tuple(shape)}, but its split ({self.describe()}) needs "
                f"{self.length} along axis {self.axis}"
            )

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


__all__ = ["Split", "assemble", "blocks"]
