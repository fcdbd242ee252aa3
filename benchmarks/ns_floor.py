"""Newton-Schulz throughput: hf_muon's batched NS against the bare same-shape matmul floor.

For a model's Muon matrices (seeded Gaussian inputs), GFLOP/s of ``hf_muon.ns.batching.run_jobs`` (batched
and one matrix at a time, ``NS_STEPS`` Polar Express steps) against the *floor*: the same ``bmm`` /
``baddbmm`` calls on pre-stacked, pre-normalised, wide-oriented tensors (no normalisation, transposes or
stacking inside the timed region). FLOPs: :func:`hf_muon.ns.cost.ns_flops`. All variants of all dtypes are
timed in the same interleaved rounds (:mod:`benchmarks.timing`).
"""

from __future__ import annotations

import math

import torch

from hf_muon.ns.batching import Job, NSConfig, run_jobs
from hf_muon.ns.coefficients import normalization_scale, schedule
from hf_muon.ns.cost import ns_flops
from hf_muon.ns.gram import gram_iterate, restart_steps
from hf_muon.ns.newton_schulz import resolve_dtype

from .timing import Contender, device_sync, interleave

NS_SEED = 2
NS_STEPS = 5
VARIANTS = ("hf_muon_batched", "hf_muon_unbatched", "floor")
# Gram-space NS and the 4-step ℓ=1e-2 ladder (hf_muon.ns.gram, hf_muon.ns.coefficients), through run_jobs, and
# the bare Gram recursion on the rectangular matrices only against the standard floor on those same matrices.
EXTRA = ("gram_batched", "auto_batched", "ladder4_batched", "gram_ladder4_batched")
RECT = ("rect_floor", "rect_gram_bare", "rect_gram_ladder4_bare", "rect_ladder4_floor")
LADDER = "polar_express_1e-2"
LADDER_STEPS = 4


def floor_stacks(mats: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """Wide-oriented, Frobenius-normalised, same-shape stacks in the compute dtype (built untimed)."""
    buckets: dict[tuple[int, int], list[torch.Tensor]] = {}
    for t in mats:
        w = t.mT if t.size(-2) > t.size(-1) else t
        buckets.setdefault(tuple(w.shape[-2:]), []).append(w.reshape(-1, *w.shape[-2:]))
    stacks = []
    for pieces in buckets.values():
        x = torch.cat(pieces, dim=0)
        x = x / (x.norm(dim=(-2, -1), keepdim=True) * normalization_scale("polar_express"))
        x = x.to(dtype).contiguous()
        stacks.append(x[0] if x.size(0) == 1 else x)
    return stacks


def bare_matmul_floor(stacks: list[torch.Tensor], triples: list[tuple[float, float, float]]) -> None:
    """The Newton-Schulz matmuls alone: ``A = XXᵀ; B = bA + cA²; X = aX + BX`` per stack."""
    for x in stacks:
        mm, addmm = (torch.bmm, torch.baddbmm) if x.ndim == 3 else (torch.mm, torch.addmm)
        for a, b, c in triples:
            A = mm(x, x.mT)
            B = addmm(A, A, A, beta=b, alpha=c)
            x = addmm(x, B, x, beta=a, alpha=1.0)


def bare_gram(stacks: list[torch.Tensor], triples: list[tuple[float, float, float]]) -> None:
    """The Gram-space recursion alone (its restarts for the dtype included) per pre-normalised stack."""
    for x in stacks:
        gram_iterate(x, triples, restart_steps(len(triples), x.dtype, x.size(-2)))


def ns_throughput(
    name: str,
    shapes: list[torch.Size],
    device: torch.device,
    dtypes: list[str],
    warmup: int,
    repeats: int,
    extra: bool = True,
) -> dict:
    """GFLOP/s of hf_muon's batched and unbatched NS and of the floor, per compute dtype; with ``extra`` also
    Gram-space NS, ``ns_method="auto"``, the 4-step ladder, and the bare Gram recursion against the standard
    floor on the rectangular matrices alone (``rect_*``; ms only, FLOPs are those of standard NS)."""
    gen = torch.Generator().manual_seed(NS_SEED)
    mats = [torch.randn(s, generator=gen).to(device) for s in shapes]
    flops = sum(ns_flops(tuple(m.shape), NS_STEPS) for m in mats)
    wide: dict[str, int] = {}
    for m in mats:
        key = "x".join(str(d) for d in sorted(m.shape[-2:]))
        wide[key] = wide.get(key, 0) + math.prod(m.shape[:-2])
    default = str(resolve_dtype("auto", device, torch.float32)).replace("torch.", "")
    out = {
        "model": name,
        "matrices": len(mats),
        "wide_shapes": wide,
        "steps": NS_STEPS,
        "coefficients": "polar_express",
        "gflop_per_call": flops / 1e9,
        "default_dtype": default,
        "rows": [],
    }
    triples = schedule("polar_express", NS_STEPS)
    ladder = schedule(LADDER, LADDER_STEPS)
    rect = [m for m in mats if m.size(-2) != m.size(-1)]
    out["rect_shapes"] = sorted({"x".join(str(d) for d in sorted(m.shape[-2:])) for m in rect})
    out["rect_gflop_per_call"] = sum(ns_flops(tuple(m.shape), NS_STEPS) for m in rect) / 1e9
    labels = VARIANTS + (EXTRA + (RECT if rect else ()) if extra else ())
    out["variants"] = list(labels)
    contenders = []
    for dtype_name in dtypes:
        jobs = [Job(m, NSConfig(NS_STEPS, "polar_express", dtype_name)) for m in mats]
        stacks = floor_stacks(mats, resolve_dtype(dtype_name, device, torch.float32))
        contenders += [
            Contender(f"{dtype_name}/hf_muon_batched", lambda jobs=jobs: run_jobs(jobs, batched=True)),
            Contender(f"{dtype_name}/hf_muon_unbatched", lambda jobs=jobs: run_jobs(jobs, batched=False)),
            Contender(f"{dtype_name}/floor", lambda stacks=stacks: bare_matmul_floor(stacks, triples)),
        ]
        if not extra:
            continue
        for label, cfg in (
            ("gram_batched", NSConfig(NS_STEPS, "polar_express", dtype_name, "gram")),
            ("auto_batched", NSConfig(NS_STEPS, "polar_express", dtype_name, "auto")),
            ("ladder4_batched", NSConfig(LADDER_STEPS, LADDER, dtype_name)),
            ("gram_ladder4_batched", NSConfig(LADDER_STEPS, LADDER, dtype_name, "gram")),
        ):
            js = [Job(m, cfg) for m in mats]
            contenders.append(Contender(f"{dtype_name}/{label}", lambda js=js: run_jobs(js, batched=True)))
        if rect:
            rs = floor_stacks(rect, resolve_dtype(dtype_name, device, torch.float32))
            contenders += [
                Contender(f"{dtype_name}/rect_floor", lambda rs=rs: bare_matmul_floor(rs, triples)),
                Contender(f"{dtype_name}/rect_gram_bare", lambda rs=rs: bare_gram(rs, triples)),
                Contender(f"{dtype_name}/rect_gram_ladder4_bare", lambda rs=rs: bare_gram(rs, ladder)),
                Contender(f"{dtype_name}/rect_ladder4_floor", lambda rs=rs: bare_matmul_floor(rs, ladder)),
            ]
    timings = interleave(contenders, warmup=warmup, repeats=repeats, sync=device_sync(device))
    for dtype_name in dtypes:
        row: dict = {"dtype": str(resolve_dtype(dtype_name, device, torch.float32)).replace("torch.", "")}
        for label in labels:
            t = timings[f"{dtype_name}/{label}"]
            if isinstance(t, Exception):
                raise t
            row[label] = {
                "ms": t.median_ms,
                "gflops": flops / (t.median_ms * 1e-3) / 1e9,
                "times_ms": t.times_ms,
                "other_cores": t.other_cores,
            }
        row["batched_vs_floor"] = row["floor"]["ms"] / row["hf_muon_batched"]["ms"]
        if "rect_floor" in row:
            row["rect_gram_vs_floor"] = row["rect_gram_bare"]["ms"] / row["rect_floor"]["ms"]
            row["rect_gram_ladder4_vs_floor"] = row["rect_gram_ladder4_bare"]["ms"] / row["rect_floor"]["ms"]
        out["rows"].append(row)
    return out
