"""The screen: every gradient of every group is checked *before anything is written*.

A step either raises with nothing changed (no weight, no state tensor, no counter) or proceeds with the
parameters that passed. Checked: sparse gradients, Muon parameters that became flat 1-D views after
construction (DeepSpeed ZeRO / FSDP v1 swap them in), and non-finite gradients. The non-finite check is cheap:
a NaN/±inf anywhere makes the fp32 sum non-finite (one sync per group); only when that trips is the exact
per-element check paid (an overflowing sum alone is not an error). Sharded (DTensor) gradients are screened on
their local shards and the verdict agreed across the ranks of their mesh. With ``nonfinite="skip"`` the
offending parameters are dropped from this step and counted in the group's ``nonfinite_skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .jobs import is_dtensor

FLAT_PARAM_HINT = (
    "Muon needs whole 2-D weight matrices, but this parameter is a 1-D flat view (FSDP v1 FlatParameter or a "
    "DeepSpeed ZeRO partition). Use FSDP2 (fully_shard / accelerate `fsdp_version: 2`), or DeepSpeed's own Muon via "
    'the DeepSpeed config block "optimizer": {"type": "Muon", ...} instead of --optim muon.'
)


def param_label(group: dict, gi: int, i: int, p: torch.Tensor) -> str:
    names = group.get("param_names")
    name = names[i] if names and i < len(names) else f"param_groups[{gi}]['params'][{i}]"
    return f"{name!r} (shape {tuple(p.shape)})"


@dataclass
class Work:
    """One group's share of a step: the parameters that will be updated and their gradients."""

    group: dict
    index: int
    params: list
    grads: list
    skipped: int = 0


def _agree(flags: torch.Tensor, mesh) -> torch.Tensor:
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
            raise ValueError(f"Muon parameter {param_label(group, gi, i, p)} became a flat {p.ndim}-D view at step "
                             f"{group['step'] + 1}. {FLAT_PARAM_HINT}")
        params.append(p)
        grads.append(p.grad)
    return Work(group, gi, params, grads)


def _nonfinite(work: Work) -> list[int]:
    """Indices (into work.params) of parameters with a non-finite gradient, agreed across ranks."""
    local = [g.to_local() if is_dtensor(g) else g for g in work.grads]
    mesh = next((g.device_mesh for g in work.grads if is_dtensor(g)), None)
    flags = (~torch.stack([g.sum(dtype=torch.float32) for g in local]).isfinite()).to(torch.float32)
    flags = _agree(flags, mesh)
    if not bool(flags.any()):
        return []
    exact = torch.tensor([0.0 if not f or bool(torch.isfinite(g).all()) else 1.0 for f, g in zip(flags, local)])
    return _agree(exact.to(flags.device), mesh).nonzero().flatten().tolist()


def screen(param_groups: list[dict]) -> list[Work]:
    """Check every group; raise before any write, or return the work of the step."""
    out = []
    for gi, group in enumerate(param_groups):
        work = _collect(group, gi)
        bad = _nonfinite(work) if work.grads else []
        if bad:
            if group["nonfinite"] == "error":
                p = work.params[bad[0]]
                i = next(k for k, q in enumerate(group["params"]) if q is p)
                raise FloatingPointError(
                    f"non-finite gradient in {param_label(group, gi, i, p)} at optimizer step {group['step'] + 1} "
                    f"({len(bad)} parameter(s) of this group affected; nothing was updated). Lower the lr, enable "
                    "gradient clipping, or pass nonfinite='skip' to skip and count such updates.")
            drop = set(bad)
            work = Work(group, gi, [p for k, p in enumerate(work.params) if k not in drop],
                        [g for k, g in enumerate(work.grads) if k not in drop], skipped=len(bad))
        out.append(work)
    return out


__all__ = ["FLAT_PARAM_HINT", "Work", "param_label", "screen"]
