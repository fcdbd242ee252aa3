"""The screen: every gradient of every group is checked *before anything is written*.

A step either raises with nothing changed (no weight, no state tensor, no counter) or proceeds with the
parameters that passed. Checked: sparse gradients, Muon parameters that became flat 1-D views after
construction (DeepSpeed ZeRO / FSDP v1 swap them in), and non-finite gradients. The check is one reduction per
gradient, its max |g| (NaN/±inf make it non-finite; one sync per group), which the in-step guard
(:mod:`hf_muon.optim.guard`) reuses to find gradients large enough to overflow a rule's state. Sharded (DTensor)
gradients are screened on their local shards and the verdict and magnitude agreed across the ranks of their mesh.
With ``nonfinite="skip"`` the offending parameters are dropped from this step and counted in the group's
``nonfinite_skipped``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..ns.tensors import FLAT_PARAM_HINT, is_dtensor


def param_label(group: dict, gi: int, i: int, p: torch.Tensor) -> str:
    names = group.get("param_names")
    name = names[i] if names and i < len(names) else f"param_groups[{gi}]['params'][{i}]"
    return f"{name!r} (shape {tuple(p.shape)})"


def label_of(group: dict, gi: int, p: torch.Tensor) -> str:
    """:func:`param_label` of ``p``, its position found by identity (error paths only: a scan of the group)."""
    return param_label(group, gi, next(i for i, q in enumerate(group["params"]) if q is p), p)


@dataclass
class Work:
    """One group's share of a step: the parameters that will be updated and their gradients."""

    group: dict
    index: int
    params: list
    grads: list
    skipped: int = 0
    size: list = field(default_factory=list)  # ‖gradient‖₂ per parameter (≥ max |g|; inf: huge), from the screen


def agree_flags(flags: torch.Tensor, mesh) -> torch.Tensor:
    """Element-wise max of per-parameter flags over the ranks sharing sharded params."""
    if mesh is not None:
        import torch.distributed as dist

        groups = [mesh.get_group(d) for d in range(mesh.ndim)] if mesh.ndim > 1 else [mesh.get_group()]
        for pg in groups:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=pg)
    return flags


def _collect(group: dict, gi: int) -> Work:
    params, grads = [], []
    for i, p in enumerate(group["params"]):
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"hf_muon.Muon does not support sparse gradients ({param_label(group, gi, i, p)})")
        if group["use_muon"] and (p.ndim < 2 or getattr(p, "_is_flat_param", False)):
            raise ValueError(
                f"Muon parameter {param_label(group, gi, i, p)} became a flat {p.ndim}-D view at step "
                f"{group['step'] + 1}. {FLAT_PARAM_HINT}"
            )
        params.append(p)
        grads.append(p.grad)
    return Work(group, gi, params, grads)


def _magnitudes(work: Work) -> list[float]:
    """max |g| per gradient (exact: a max cannot overflow), agreed across ranks (max over local shards); NaN for
    a gradient holding NaN or ±inf. One ``aminmax`` pass per gradient (the cost of a sum) and one sync."""
    local = [g.to_local() if is_dtensor(g) else g for g in work.grads]
    mesh = next((g.device_mesh for g in work.grads if is_dtensor(g)), None)
    ranges = [torch.aminmax(g) if g.numel() else (g.new_zeros(()),) * 2 for g in local]  # an empty shard: 0
    ends = torch.stack([end.float() for pair in ranges for end in pair]).view(-1, 2)
    sizes = torch.maximum(-ends[:, 0], ends[:, 1])  # NaN propagates; an inf element gives inf
    flags = (~sizes.isfinite()).to(torch.float32)
    if mesh is not None:
        both = agree_flags(torch.stack([flags, torch.where(flags > 0, 0.0, sizes)]), mesh)
        flags, sizes = both[0], both[1]
    return [math.nan if f else n for f, n in zip(flags.tolist(), sizes.tolist())]


def screen(param_groups: list[dict]) -> list[Work]:
    """Check every group; raise before any write, or return the work of the step."""
    out = []
    for gi, group in enumerate(param_groups):
        work = _collect(group, gi)
        work.size = _magnitudes(work) if work.grads else []
        bad = [k for k, a in enumerate(work.size) if a != a]
        if bad:
            if group["nonfinite"] == "error":
                raise FloatingPointError(
                    f"non-finite gradient in {label_of(group, gi, work.params[bad[0]])} at optimizer step "
                    f"{group['step'] + 1} ({len(bad)} parameter(s) of this group affected; nothing was updated). Lower "
                    "the lr, enable gradient clipping, or pass nonfinite='skip' to skip and count such updates."
                )
            drop = set(bad)
            keep = [k for k in range(len(work.params)) if k not in drop]
            work = Work(
                group,
                gi,
                [work.params[k] for k in keep],
                [work.grads[k] for k in keep],
                skipped=len(bad),
                size=[work.size[k] for k in keep],
            )
        out.append(work)
    return out


__all__ = ["FLAT_PARAM_HINT", "Work", "agree_flags", "param_label", "screen"]
