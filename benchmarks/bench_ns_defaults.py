"""Faster Newton-Schulz settings against the default: quality on real momenta, then convergence over seeds.

What is measured
----------------
1. **Quality on real momentum matrices of the benchmark models.** ``llama-7.4M`` (all 28 Muon matrices) and
   ``gpt2-small`` (the Muon matrices of blocks 0, 5 and 11) are trained for a few steps with hf_muon's defaults
   on TinyStories blocks (bench_convergence's data); their momentum buffers are then orthogonalized by each
   setting of :data:`SETTINGS` in bf16 and fp32 and compared with the exact polar factor ``U Vᵀ`` (float64
   SVD): the singular-value band ``[σ_min, σ_max]`` over all matrices, ``max ‖OOᵀ − I‖₂`` (wide side), and the
   relative distance ``‖O − UVᵀ‖_F / ‖UVᵀ‖_F`` (mean and max). ``aol`` is a Turbo-Muon-style row computed here
   only (AOL row scaling ``D = diag(Σ_j |XXᵀ|_ij)^{-½}`` of the start, arXiv 2512.04632), for comparison.
   **The bound** (:func:`bound`): Newton-Schulz maps each singular value through the composed scalar polynomial
   (:func:`hf_muon.ns.coefficients.scalar_map`), so on the exact σ's (float64) the distance any schedule reaches
   from any *scalar* start is computed without rounding. With the oracle start ``σ/σ_max`` (the best any norm
   estimate — Frobenius, ``‖XXᵀ‖_F^½``, a power iteration — could give) and the best of the greedy minimax
   ladders of 4 steps from ``ℓ`` in :data:`BOUND_ELLS` (Polar Express Alg. 1, :mod:`hf_muon.lab.research.minimax`),
   it says whether *any* such 4-step scheme can reach the default's 5-step distance on these momenta.
2. **Convergence.** bench_variants' harness (bench_convergence's h128-L4 Llama, 400 steps, seeds 0, 1, 2: the
   initial weights and the batch order) at Muon's best lr there (1e-2), for each setting of :data:`RUNS`.
   Target: the mean paired (same-seed) difference of the final validation loss to the run it is paired with (the
   default; for the fp32 default, ``ns_method="auto"``, which takes Gram space on the rectangular matrices in
   fp32, standard NS in fp32 — on this bf16 CPU at h128 ``auto`` keeps the standard iteration) is within that
   run's seed noise (its sample std over the seeds).
3. **Convergence at llama-7.4M's shapes** (``--wide``): the same harness on a Llama with hidden 256 and MLP 688,
   whose 256×688 matrices the default (``ns_method="auto"``) runs in Gram space in bf16 (restarts every other
   step from 256 rows, :mod:`hf_muon.ns.gram`), paired with ``ns_method="newton_schulz"`` (standard NS on every
   matrix), seeds 0, 1, 2; quality is not repeated. Output ``results/ns_defaults_wide.json`` and its own
   ``RESULTS.md`` section.

Cost: ≈1-2 min of quality, 15 training runs of ≈35-55 s: ≈12 min on 2 idle cores; ``--wide``: 6 runs. ``--tiny``: the tiny models, 30
steps, two seeds. Output: ``results/ns_defaults.json`` and the ``ns_defaults`` section of ``RESULTS.md``.

Usage::

    python benchmarks/bench_ns_defaults.py
    python benchmarks/bench_ns_defaults.py --tiny --allow-busy
    python benchmarks/bench_ns_defaults.py --wide
    python benchmarks/bench_ns_defaults.py --from-json benchmarks/results/ns_defaults.json
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from benchmarks import cli, peers
from benchmarks.bench_convergence import FULL, TINY
from benchmarks.machine import contended
from benchmarks.models import MODEL_SEED, MODELS, convergence_llama
from benchmarks.reports import ns_defaults as REPORT
from benchmarks.reports import ns_defaults_wide as WIDE_REPORT
from benchmarks.training import DATA_SEED, RunSpec, batch_order, prepare_data, train_run

MUON_LR = 1e-2  # bench_variants' best Muon lr
SEEDS = (0, 1, 2)
LADDER = {"ns_steps": 4, "coefficients": "polar_express_1e-2"}
# name: (NS keyword arguments of hf_muon.ns.newton_schulz, AOL start)
SETTINGS = {
    "default: 5 steps polar_express": ({"steps": 5}, False),
    "gram, 5 steps polar_express": ({"steps": 5, "method": "gram"}, False),
    "4 steps polar_express": ({"steps": 4}, False),
    "4 steps polar_express_1e-2": ({"steps": 4, "coefficients": "polar_express_1e-2"}, False),
    "gram, 4 steps polar_express_1e-2": ({"steps": 4, "coefficients": "polar_express_1e-2", "method": "gram"}, False),
    "aol, 4 steps polar_express_1e-2": ({"steps": 4, "coefficients": "polar_express_1e-2"}, True),
}
# name: (hf_muon knobs, the run it is paired with)
RUNS = {
    "default": ({}, None),
    "4 steps polar_express_1e-2": (LADDER, "default"),
    "gram, 4 steps polar_express_1e-2": ({**LADDER, "ns_method": "gram"}, "default"),
    # what avx2-only CPUs run: the fp32 default (auto: Gram on the rectangular matrices) against standard NS
    "ns_dtype=float32, ns_method=newton_schulz": ({"ns_dtype": "float32", "ns_method": "newton_schulz"}, None),
    "ns_dtype=float32 (auto)": ({"ns_dtype": "float32"}, "ns_dtype=float32, ns_method=newton_schulz"),
}
# --wide: llama-7.4M's matrix shapes (256×256, 256×688) in bench_convergence's harness
WIDE = dataclasses.replace(FULL, hidden=256, intermediate=688)
WIDE_RUNS = {
    "ns_method=newton_schulz": ({"ns_method": "newton_schulz"}, None),
    "default (auto: Gram on 256×688)": ({}, "ns_method=newton_schulz"),
}
GPT2_BLOCKS = (".h.0.", ".h.5.", ".h.11.")
BOUND_ELLS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # the 4-step ladders the bound tries (ℓ = 1e-3: Polar Express's)


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(__doc__, REPORT.NAME, tiny_help="tiny models, 30 steps, two seeds (smoke test)")
    ap.add_argument("--data", default=None, help="data mirror (default $HF_MUON_DATA, else ../shared/data)")
    ap.add_argument(
        "--wide",
        action="store_true",
        help="convergence only, at llama-7.4M's shapes: the default (Gram on 256×688) vs standard NS",
    )
    return ap.parse_args(argv)


def momenta(model_name: str, data, steps: int, tiny: bool) -> list[torch.Tensor]:
    """Momentum buffers of ``model_name``'s Muon matrices after ``steps`` default hf_muon steps on real text."""
    import hf_muon

    model = MODELS[model_name].build(tiny)
    opt = hf_muon.create_optimizer(model, hf_muon.MuonConfig(lr=MUON_LR))
    vocab = model.get_input_embeddings().num_embeddings
    for k in range(steps):
        ids = data.train[data.order[k % len(data.order)]][:, :128].clamp_max(vocab - 1)
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    out = []
    for name, p in model.named_parameters():
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if (
            buf is not None
            and buf.ndim == 2
            and (model_name != "gpt2-small" or tiny or any(b in "." + name for b in GPT2_BLOCKS))
        ):
            out.append(buf.detach().clone())
    return out


def aol_start(W: torch.Tensor) -> torch.Tensor:
    """``D W`` with ``D = diag(Σ_j |W Wᵀ|_ij)^{-½}`` (wide orientation): spectral norm ≤ 1 (Schur test)."""
    R = W @ W.mT
    return R.abs().sum(-1).clamp_min(1e-30).rsqrt().unsqueeze(-1) * W


def quality(mats: list[torch.Tensor]) -> dict:
    """Per setting and dtype: band, max ‖OOᵀ − I‖₂ and distance to the exact polar factor over ``mats``."""
    from hf_muon.ns.newton_schulz import newton_schulz
    from hf_muon.ns.reference import svd_orthogonalize

    wide = [m if m.size(0) <= m.size(1) else m.mT for m in mats]
    refs = [svd_orthogonalize(w).float() for w in wide]
    out = {}
    for name, (kw, aol) in SETTINGS.items():
        for dtype in ("bfloat16", "float32"):
            smin, smax, orth, errs = [], [], [], []
            for w, ref in zip(wide, refs):
                x = aol_start(w.double()).float() if aol else w
                O = newton_schulz(x, dtype=dtype, **kw).float()
                s = torch.linalg.svdvals(O)
                smin.append(s.min().item())
                smax.append(s.max().item())
                orth.append(torch.linalg.matrix_norm(O @ O.mT - torch.eye(O.size(0)), ord=2).item())
                errs.append((torch.linalg.matrix_norm(O - ref) / torch.linalg.matrix_norm(ref)).item())
            out[f"{name} | {dtype}"] = {
                "setting": name,
                "dtype": dtype,
                "sigma_min": min(smin),
                "sigma_max": max(smax),
                "orth_max": max(orth),
                "err_mean": sum(errs) / len(errs),
                "err_max": max(errs),
                "err_each": errs,
                "sigma_min_each": smin,
                "sigma_max_each": smax,
            }
    return out


def bound(mats: list[torch.Tensor]) -> dict:
    """Distances to the polar factor from the exact singular values: the default as NS runs it (Frobenius start,
    5 Polar Express steps), the same 5 steps from the oracle start ``σ/σ_max``, and 4 steps of each greedy ladder
    of :data:`BOUND_ELLS` from the oracle start (the best of them is the bound); plus each matrix's stable rank
    ``Σσ²/σ_max²``."""
    import numpy as np

    from hf_muon.lab.research.minimax import ladder
    from hf_muon.ns.coefficients import scalar_map

    sigmas = [torch.linalg.svdvals(m.double()).numpy() for m in mats]

    def dist(start, coefficients, steps: int) -> dict:
        d = [float(np.sqrt(np.mean((scalar_map(start(s), coefficients, steps) - 1.0) ** 2))) for s in sigmas]
        return {"mean": float(np.mean(d)), "max": max(d)}

    frobenius, oracle = (lambda s: s / np.sqrt((s * s).sum())), (lambda s: s / s.max())
    rows = {
        "Frobenius start, 5 steps polar_express (the default)": dist(frobenius, "polar_express", 5),
        "oracle σ_max start, 5 steps polar_express": dist(oracle, "polar_express", 5),
    }
    ladders = {}
    for ell in BOUND_ELLS:  # custom triples carry no safety factor: the oracle start is exactly ≤ 1
        ladders[ell] = dist(oracle, [t for t, _ in ladder(ell, 4)], 4)
        rows[f"oracle σ_max start, 4 steps of the ℓ={ell:g} ladder"] = ladders[ell]
    best = min(ladders, key=lambda e: ladders[e]["mean"])
    ranks = sorted(float((s * s).sum() / s.max() ** 2) for s in sigmas)
    return {
        "rows": rows,
        "best_4": {"ell": best, **ladders[best]},
        "default": rows[next(iter(rows))],
        "stable_rank": {"min": ranks[0], "median": ranks[len(ranks) // 2], "max": ranks[-1]},
    }


def measure(args, load: dict, device) -> None:
    from hf_muon.lab.data import resolve_data_dir

    size = TINY if args.tiny else WIDE if args.wide else FULL
    run_set, report = (WIDE_RUNS, WIDE_REPORT) if args.wide else (RUNS, REPORT)
    seeds = SEEDS[:2] if args.tiny else SEEDS
    started = time.time()
    data = prepare_data(
        str(resolve_data_dir(args.data, required=True)),
        block=size.block,
        batch=size.batch,
        steps=size.steps,
        vocab_keep=size.vocab_keep,
        val_blocks=size.val_blocks,
        max_tokens=size.max_tokens,
    )
    result = cli.begin(
        args,
        report.NAME,
        load,
        {"model": [MODEL_SEED + s for s in seeds], "data_order": [DATA_SEED + s for s in seeds]},
    )
    result["quality"] = {}
    for model_name, steps in () if args.wide else (("llama-7.4M", 20), ("gpt2-small", 6)):
        t0 = time.time()
        mats = momenta(model_name, data, 3 if args.tiny else steps, args.tiny)
        result["quality"][model_name] = {
            "matrices": len(mats),
            "train_steps": steps,
            "shapes": sorted({"x".join(map(str, m.shape)) for m in mats}),
            "rows": quality(mats),
            "bound": bound(mats),
        }
        print(f"quality {model_name}: {len(mats)} matrices, {time.time() - t0:.0f} s", flush=True)
    bases = {
        s: convergence_llama(
            size.hidden, size.layers, size.intermediate, size.heads, size.block, data.vocab, seed=MODEL_SEED + s
        )
        for s in seeds
    }
    orders = {s: batch_order(len(data.train), size.steps, size.batch, DATA_SEED + s) for s in seeds}
    runs = []
    for seed in seeds:  # seed-major: every setting of a seed back to back, so machine drift hits all alike
        for name, (knobs, _) in run_set.items():
            spec = RunSpec(
                f"{name} seed {seed}", name, MUON_LR, peers.hf_muon_optimizer(**knobs), str(knobs or "defaults")
            )
            r = train_run(
                spec,
                bases[seed],
                dataclasses.replace(data, order=orders[seed]),
                steps=size.steps,
                eval_every=size.eval_every,
                eval_batch=size.eval_batch,
                device=device,
            )
            r["seed"] = seed
            runs.append(r)
            print(
                f"  [{time.time() - started:5.0f} s] {spec.name:<40} final val {r['final_val_loss']:.4f}  "
                f"step {r['step_ms_median']:.1f} ms",
                flush=True,
            )
    result.update(
        config={
            "model": f"Llama h{size.hidden} L{size.layers} i{size.intermediate}",
            "steps": size.steps,
            "lr": MUON_LR,
            "seeds": list(seeds),
            "runs": {k: {"knobs": v, "paired_with": b} for k, (v, b) in run_set.items()},
            "ns_dtype": peers.ns_auto_dtype(device),
        },
        runs=runs,
        data=data.info,
    )
    result["summary"] = report.summarize(result)
    result["targets"] = report.targets(result)
    cli.finish(result, started, any(contended(r.get("other_cores")) for r in runs))
    cli.publish(args, result, report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(args, WIDE_REPORT if args.wide else REPORT, measure)


if __name__ == "__main__":
    sys.exit(main())
