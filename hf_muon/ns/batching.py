"""One batching engine: orthogonalize many matrices with as few batched calls as possible.

Every job is a tensor whose last two dims are the matrix (2-D weights, ``(E, m, n)`` expert stacks,
flattened convolutions) plus its Newton-Schulz settings. Jobs whose *wide-oriented* matrix shape
(``(min(m, n), max(m, n))``), device, dtype and settings agree are stacked into one ``(B, m, n)`` tensor
and orthogonalized in a single batched call, so e.g. a Llama's ``gate_proj`` (I, H), ``up_proj`` (I, H)
and ``down_proj`` (H, I) all run as one batch. Newton-Schulz is transpose-equivariant
(``NS(Gᵀ) = NS(G)ᵀ``), so tall matrices are transposed in and back out.

Tall stacks are transposed copies, not ``.mT`` views: BLAS products with a transposed operand are slower than
the copies they save (tried and measured: benchmarks/RESULTS.md).

On CPU a bucket is cut into stacks of at most :func:`stack_limit` bytes in the compute dtype (a quarter of the
last-level cache): one batched stack larger than the cache streams every Newton-Schulz product through memory.
A bucket that fits stays one stack; on GPU buckets are never cut.

The optimizer, the distributed owner-compute path and the benchmarks all go through ``run_jobs``.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .blocks import Split, assemble, blocks
from .coefficients import schedule
from .newton_schulz import ITERATIVE, newton_schulz, normalize_into, ns_iterate, resolve_dtype
from .reference import svd_orthogonalize
from .workspace import scratch


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
    kernels: str = "auto"  # the cast into the stack: compiled or eager (hf_muon.ns.kernels)

    def key(self):
        c = self.coefficients
        if not isinstance(c, str):
            c = tuple(tuple(float(x) for x in t) if isinstance(t, (list, tuple)) else float(t) for t in c)
        return (self.steps, c, self.dtype, self.method, float(self.power), self.split, self.ratios, self.kernels)


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
    return newton_schulz(
        x, steps=cfg.steps, coefficients=cfg.coefficients, dtype=cfg.dtype, method=cfg.method, kernels=cfg.kernels
    )


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
        shape = (sum(w.size(0) for w in pieces), first.size(-2), first.size(-1))
        # the normalised stack is scratch (reused next step, :mod:`hf_muon.ns.workspace`) unless 0 steps return it
        X = (
            scratch("stack", shape, compute, first.device)
            if cfg.steps
            else torch.empty(shape, dtype=compute, device=first.device)
        )
        return ns_iterate(
            normalize_into(pieces, X, cfg.coefficients, kernels=cfg.kernels),
            schedule(cfg.coefficients, cfg.steps),
            cfg.method,
        )
    return _run_one(pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0), cfg)


# The share of the last-level cache one batched stack may fill (its working set is about twice that: X and the
# new X, plus the m×m products).
CACHE_FRACTION = 0.25
DEFAULT_CACHE_BYTES = 32 << 20


@functools.lru_cache(maxsize=1)
def last_level_cache_bytes() -> int:
    """The largest CPU cache (sysfs ``cpu0/cache/index*/size``, e.g. ``32768K``); 32 MiB when unreadable."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        digits = text[:-1] if unit != 1 else text
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes, default=DEFAULT_CACHE_BYTES)


def stack_limit(device: torch.device) -> int | None:
    """Bytes one batched stack may take on ``device``: ``CACHE_FRACTION`` of the CPU's last-level cache; ``None``
    (no limit) on accelerators, where larger batches only fill the device better."""
    return int(CACHE_FRACTION * last_level_cache_bytes()) if device.type == "cpu" else None


def cut(sizes: Sequence[int], per_matrix: int, limit: int | None) -> list[list[int]]:
    """Consecutive groups of piece indices (piece ``i`` holds ``sizes[i]`` matrices of ``per_matrix`` bytes), each
    group at most ``limit`` bytes; a piece larger than the limit forms a group alone. ``None``: one group."""
    if limit is None:
        return [list(range(len(sizes)))]
    groups: list[list[int]] = []
    used = 0
    for i, c in enumerate(sizes):
        if groups and used + c * per_matrix <= limit:
            groups[-1].append(i)
            used += c * per_matrix
        else:
            groups.append([i])
            used = c * per_matrix
    return groups


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
        cfg, first = jobs[idx[0]].config, pieces[0]
        itemsize = resolve_dtype(cfg.dtype, first.device, first.dtype).itemsize
        for group in cut(counts, first.size(-2) * first.size(-1) * itemsize, stack_limit(first.device)):
            result = _run_stack([pieces[g] for g in group], cfg)
            for g, chunk in zip(group, torch.split(result, [counts[g] for g in group], dim=0)):
                t = jobs[idx[g]].tensor
                chunk = chunk.mT if tall[g] else chunk
                out[idx[g]] = chunk.reshape(t.shape)
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
    return [
        res[start]
        if n is None
        else assemble(res[start : start + n], job.config.split, job.tensor.shape, job.config.ratios)
        for job, (start, n) in zip(jobs, plan)
    ]
