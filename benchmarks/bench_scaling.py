"""Scaling: optimizer step time vs parameter count, hf_muon against torch AdamW, and hf_muon's NS share.

What is measured
----------------
Five Llama sizes (:data:`benchmarks.models.SCALING_SIZES`: random weights, vocab 8,192, untied, head dim
64, intermediate ≈ 8/3·hidden rounded up to a multiple of 8, fp32), width and depth grown together: hidden
128/256/384/512/768 with 2/4/6/8/12 layers (≈2.5M to ≈98M params; h256-L4 is ``llama-7.4M``). For each size:

* **step ms**: median wall time of ``optimizer.step()`` alone with fixed seeded gradients
  (:mod:`benchmarks.stepping`), the three optimizers timed in interleaved rounds after warmup rounds
  (:mod:`benchmarks.timing`). Optimizers: ``torch.optim.AdamW`` (lr 1e-3, default path and ``fused=True``)
  on every parameter, and hf_muon at its defaults (``create_optimizer(model, MuonConfig(lr=1e-3))``: Polar
  Express, 5 NS steps, batched, NS dtype ``auto``; its AdamW groups for embeddings, head and norms).
* **NS ms / NS share**: the time inside hf_muon's ``orthogonalize`` (batched Newton-Schulz over all Muon
  matrices, stacking and normalisation included) within the same timed steps; share = median NS ms / median
  step ms. NS GFLOP/s counts :func:`hf_muon.ns.cost.ns_flops` FLOPs.
* **slope**: least-squares slope of log(step ms) vs log(params) over the sizes, per optimizer (1.0 = linear in
  params). AdamW is linear in params; NS is cubic in width, so hf_muon's slope is steeper and its NS share
  grows with size.

Output: ``results/scaling.json``, ``results/scaling.png`` (step ms vs params, log-log) and the ``scaling``
section of ``RESULTS.md``. Full run ≈1 minute on 2 CPU cores. ``--tiny`` (four very small sizes, one thread,
< 30 s) writes ``results/scaling_tiny.json`` only; its plot goes to a temporary folder that is removed.

Usage::

    python benchmarks/bench_scaling.py                      # full run
    python benchmarks/bench_scaling.py --tiny --allow-busy  # smoke test
    python benchmarks/bench_scaling.py --from-json benchmarks/results/scaling.json  # report only
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import hf_muon
from benchmarks import cli
from benchmarks.models import MODEL_SEED, SCALING_SIZES, SCALING_TINY, LlamaSize
from benchmarks.peers import ns_auto_dtype, step_peer
from benchmarks.reports import scaling as REPORT
from benchmarks.stepping import GRAD_SEED, GRAD_STD, add_ratios, any_contended, make_case, time_peers
from hf_muon.ns.cost import ns_flops

NS_STEPS = hf_muon.MuonConfig().ns_steps  # the default the hf_muon row runs with
SLOW_STEP_S = 30.0
# JSON key → the peer of benchmarks.peers
LINEUP = {"adamw": "AdamW (torch)", "adamw_fused": "AdamW (torch, fused=True)", "hf_muon": "hf_muon"}


def run_size(size: LlamaSize, *, warmup: int, repeats: int | None, device, tiny: bool) -> dict:
    t0 = time.time()
    case = make_case(size.name, size.build(), device)
    info = case.summary()
    flops = sum(ns_flops(tuple(p.shape), NS_STEPS) for p in case.muon)
    reps = repeats or size.repeats
    print(
        f"== {size.name}: {info['params']:,} params, {info['muon_params']:,} in {info['muon_tensors']} Muon "
        f"matrices; warmup {warmup}, {reps} timed steps",
        flush=True,
    )
    lineup = [step_peer(name, device) for name in LINEUP.values()]
    records = time_peers(
        case, lineup, tiny=tiny, device=device, warmup=warmup, repeats=reps, slow_s=SLOW_STEP_S, ns_time=True
    )
    add_ratios(records, base=LINEUP["adamw"])
    adamw, adamw_fused, hf = records
    if hf.get("ns_ms"):
        hf["ns_gflops"] = flops / (hf["ns_ms"] * 1e-3) / 1e9
    if hf.get("step_ms") and adamw_fused.get("step_ms"):
        hf["ratio_adamw_fused"] = hf["step_ms"] / adamw_fused["step_ms"]
    for r in records:
        shown = f"{r['step_ms']:.2f} ms" if r["status"] == "ok" else f"FAILED ({r['reason'][:160]})"
        extra = f"  (NS {r['ns_ms']:.2f} ms = {100 * r['ns_share']:.0f}%)" if r.get("ns_ms") is not None else ""
        print(f"  {r['name']:<26} {shown}{extra}", flush=True)
    return {
        "size": {**asdict(size), "intermediate": size.intermediate, "name": size.name},
        "params": info["params"],
        "muon_params": info["muon_params"],
        "muon_matrices": info["muon_tensors"],
        "ns_gflop_per_step": flops / 1e9,
        "warmup": warmup,
        "repeats": reps,
        **dict(zip(LINEUP, records)),
        "seconds": time.time() - t0,
    }  # the model, its gradients and the optimizers are freed with this frame


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(
        __doc__,
        REPORT.NAME,
        plots="scaling.png",
        tiny_help="four very small sizes, 1 thread, 1 warmup + 2 timed steps (smoke test, < 30 s)",
    )
    cli.add_timing_args(ap, "size")
    return ap.parse_args(argv)


def measure(args, load: dict, device) -> None:
    warmup = cli.warmup_of(args)
    started = time.time()
    results = []
    for size in SCALING_TINY if args.tiny else SCALING_SIZES:
        results.append(run_size(size, warmup=warmup, repeats=args.repeats, device=device, tiny=args.tiny))
        gc.collect()
    data = cli.begin(args, "scaling", load, {"model": MODEL_SEED, "grads": GRAD_SEED, "grad_std": GRAD_STD})
    data.update(ns_dtype=ns_auto_dtype(device), ns_steps=NS_STEPS, sizes=results, slopes=REPORT.slopes(results))
    cli.finish(data, started, any_contended([r[k] for r in results for k in LINEUP]))
    data["plot"] = cli.draw_plots(args, lambda folder: REPORT.plots(data, folder))
    cli.publish(args, data, REPORT)
    print(f"plot: {data['plot']}")


def main(argv: list[str] | None = None) -> int:
    return cli.run(parse_args(argv), REPORT, measure)


if __name__ == "__main__":
    sys.exit(main())
