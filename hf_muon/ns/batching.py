"""One batching engine: orthogonalize many matrices with as few batched calls as possible.

Every job is a tensor whose last two dims are the matrix (2-D weights, ``(E, m, n)`` expert stacks,
flattened convolutions) plus its Newton-Schulz settings. Jobs whose *wide-oriented* matrix shape
(``(min(m, n), max(m, n))``), device, dtype and settings agree are stacked into one ``(B, m, n)`` tensor
and orthogonalized in a single batched call, so e.g. a Llama's ``gate_proj`` (I, H), ``up_proj`` (I, H)
and ``down_proj`` (H, I) all run as one batch. Newton-Schulz is transpose-equivariant
(``NS(Gᵀ) = NS(G)ᵀ``), so tall matrices are transposed in and back out.

The optimizer, the distributed owner-compute path and the benchmarks all go through ``run_jobs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .blocks import Split, assemble, blocks
from .coefficients import schedule
from .newton_schulz import ITERATIVE, newton_schulz, normalize_into, ns_iterate, resolve_dtype
from .reference import svd_orthogonalize


@dataclass
class NSConfig:
    """How one matrix is orthogonalized (hashable: jobs with equal configs batch together)."""

    steps: int = 5
    coefficients: str | tuple = "polar_express"
    dtype: str = "auto"
    method: str = "newton_schulz"
    power: float = 0.0  # spectral power p: U Σ^p Vᵀ (0 = orthogonalize)
    split: Split | None = None  # fused projection: orthogonalize these blocks separately (hf_muon.ns.blocks)
    ratios: tuple[float, ...] | None = None  # per-block scale relative to the whole matrix, applied on assembly

    def key(self):
        c = self.coefficients
        if not isinstance(c, str):
            c = tuple(tuple(float(x) for x in t) if isinstance(t, (list, tuple)) else float(t) for t in c)
        return (self.steps, c, self.dtype, self.method, float(self.power), self.split, self.ratios)


@dataclass
class Job:
    tensor: torch.Tensor  # (..., m, n)
    config: NSConfig = field(default_factory=NSConfig)


def _run_one(x: torch.Tensor, cfg: NSConfig) -> torch.Tensor:
    if cfg.power:
        from .spectral_power import spectral_power

        return spectral_power(x, cfg.power, method="svd" if cfg.method == "svd" else "auto")
    if cfg.method == "svd":
        return svd_orthogonalize(x)
    return newton_schulz(x, steps=cfg.steps, coefficients=cfg.coefficients, dtype=cfg.dtype, method=cfg.method)


def batch_key(t: torch.Tensor, cfg: NSConfig):
    m, n = t.shape[-2], t.shape[-1]
    return (min(m, n), max(m, n), t.device, t.dtype, cfg.key())


def _run_stack(pieces: list[torch.Tensor], cfg: NSConfig) -> torch.Tensor:
    """One bucket: wide ``(c, m, n)`` pieces of equal shape → their results stacked as ``(B, m, n)``."""
    if cfg.method in ITERATIVE and not cfg.power:
        # Stack, normalise and cast in one pass per piece (no fp32 concatenation of the whole stack, no separate
        # division and cast), then iterate. Equal to newton_schulz on the concatenation up to the summation
        # order inside each Frobenius norm (a transposed piece is reduced in its own memory order).
        first = pieces[0]
        compute = resolve_dtype(cfg.dtype, first.device, first.dtype)
        X = torch.empty((sum(w.size(0) for w in pieces), first.size(-2), first.size(-1)), dtype=compute,
                        device=first.device)
        return ns_iterate(normalize_into(pieces, X, cfg.coefficients), schedule(cfg.coefficients, cfg.steps),
                          cfg.method)
    return _run_one(pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0), cfg)


def run_jobs(jobs: Sequence[Job], batched: bool = True) -> list[torch.Tensor]:
    """Orthogonalize every job; returns one tensor per job, shaped like the job's tensor.

    Results are in the Newton-Schulz compute dtype (callers cast when they apply them). With
    ``batched=False`` each job runs alone (the unbatched variant the benchmarks compare against).
    """
    if any(job.config.split is not None for job in jobs):
        return _run_split(jobs, batched)
    out: list[torch.Tensor | None] = [None] * len(jobs)
    if not batched:
        for i, job in enumerate(jobs):
            out[i] = _run_one(job.tensor, job.config)
        return out  # type: ignore[return-value]
    buckets: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        buckets.setdefault(batch_key(job.tensor, job.config), []).append(i)
    for idx in buckets.values():
        pieces, counts, tall = [], [], []
        for i in idx:
            t = jobs[i].tensor
            is_tall = t.size(-2) > t.size(-1)
            w = t.mT if is_tall else t
            w = w.reshape(-1, w.size(-2), w.size(-1))
            pieces.append(w)
            counts.append(w.size(0))
            tall.append(is_tall)
        result = _run_stack(pieces, jobs[idx[0]].config)
        for i, chunk, is_tall in zip(idx, torch.split(result, counts, dim=0), tall):
            t = jobs[i].tensor
            chunk = chunk.mT if is_tall else chunk
            out[i] = chunk.reshape(t.shape)
    return out  # type: ignore[return-value]


def _run_split(jobs: Sequence[Job], batched: bool) -> list[torch.Tensor]:
    """Jobs with a fused-projection split: each block becomes a job of its own (batched with every other matrix
    of its shape), and the block results are assembled, times their scale ratios, into the job's shape."""
    flat: list[Job] = []
    plan: list[tuple[int, int | None]] = []
    for job in jobs:
        split = job.config.split
        if split is None:
            plan.append((len(flat), None))
            flat.append(job)
            continue
        sub = dataclasses.replace(job.config, split=None, ratios=None)
        parts = blocks(job.tensor, split)
        plan.append((len(flat), len(parts)))
        flat.extend(Job(b, sub) for b in parts)
    res = run_jobs(flat, batched=batched)
    return [res[start] if n is None else assemble(res[start:start + n], job.config.split, job.tensor.shape,
                                                   job.config.ratios)
            for job, (start, n) in zip(jobs, plan)]
