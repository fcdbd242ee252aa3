"""From a Muon group's directions to Newton-Schulz jobs (:class:`hf_muon.ns.batching.Job`).

Each job is the parameter's direction viewed as a matrix (2-D as is, ``(E, m, n)`` expert stacks per expert,
convolutions flattened to ``(out, in·∏k)``) plus its NS settings from the group: steps (or the per-matrix
``ns_steps="auto"`` choice, :mod:`hf_muon.ns.schedule`), coefficients, dtype, method, spectral power, and a
fused projection's block split with each block's relative scale.
"""

from __future__ import annotations

import torch

from ..ns.batching import Job, NSConfig
from ..ns.blocks import Split
from ..ns.schedule import normalized_sigma_quantile, steps_for
from ..ns.tensors import is_dtensor
from .apply import block_ratios


def as_matrix(u: torch.Tensor, group: dict) -> torch.Tensor:
    if u.ndim == 2 or (group["experts"] and u.ndim == 3):
        return u
    return u.reshape(u.size(0), -1)  # conv (out, in, k...) -> (out, in*k*k)


def ns_config(group: dict, steps: int | None = None, p: torch.Tensor | None = None, ratios: bool = True) -> NSConfig:
    """NS settings of a group; with ``p`` and a fused-projection split, also the block split and (``ratios``) each
    block's scale relative to the whole matrix's (so the optimizer applies one scale per parameter; a variant
    that transforms O gets the bare blocks and applies the ratios itself)."""
    if steps is None:
        steps = group["ns_steps"] if group["ns_steps"] != "auto" else group["auto_max"]
    split = Split.from_spec(group["split"]) if p is not None else None
    ratios = (
        block_ratios(tuple(p.shape), split, group["transposed"], group["experts"], group["scale_mode"])
        if split is not None and ratios
        else None
    )
    return NSConfig(
        steps,
        group["coefficients"],
        group["ns_dtype"],
        group["ns_method"],
        float(group["spectral_power"]),
        split,
        ratios,
        group["kernels"],
    )


def auto_steps(st: dict, group: dict, matrix: torch.Tensor) -> int:
    """Per-matrix steps for ``ns_steps="auto"``, re-estimated every ``auto_every`` steps (kept in the state)."""
    if "ns_steps" not in st or (group["step"] - 1) % group["auto_every"] == 0:
        full = matrix.full_tensor() if is_dtensor(matrix) else matrix
        sigma = normalized_sigma_quantile(full, group["auto_quantile"])
        steps = steps_for(sigma, group["coefficients"], group["auto_target"], group["auto_min"], group["auto_max"])
        st["ns_steps"] = torch.tensor(steps, dtype=torch.int64)
    return int(st["ns_steps"])


def make_jobs(group: dict, states: list[dict], params: list, directions: list, ratios: bool = True) -> list[Job]:
    jobs = []
    for st, p, u in zip(states, params, directions):
        m = as_matrix(u, group)
        steps = auto_steps(st, group, m) if group["ns_steps"] == "auto" else None
        jobs.append(Job(m, ns_config(group, steps, p, ratios)))
    return jobs


__all__ = ["as_matrix", "auto_steps", "is_dtensor", "make_jobs", "ns_config"]
