"""Optimizer step time and optimizer-state memory: hf_muon against AdamW and other Muon implementations.

What is measured
----------------
For every model of :data:`benchmarks.models.STEP_MODELS` (random weights from a config, never downloaded)
and every optimizer of :func:`benchmarks.peers.step_peers`:

* **step ms**: median wall time of ``optimizer.step()`` alone (no forward/backward) with fixed seeded
  gradients restored untimed before every step (:mod:`benchmarks.stepping`). All optimizers of a model are
  built on the same parameters and timed in interleaved rounds after warmup rounds (:mod:`benchmarks.timing`),
  so machine noise cancels in the ratios. Keeping every optimizer's state alive at once needs memory: about
  11 GB for GPT-2 small. On CUDA the timed region ends with ``torch.cuda.synchronize()``.
* **state bytes**: the sum of ``nbytes`` of every tensor in ``optimizer.state`` after timing.
* **×AdamW**: step time over ``torch.optim.AdamW``'s on the same model; hf_muon rows also give the ratio
  to ``torch.optim.Muon`` (+ AdamW for the rest).

Every Muon implementation gets the Muon set of ``hf_muon.route(model)`` (``moe_experts="muon"`` for the MoE
model); a peer that cannot run is listed with the exception text as its reason, and peers that cannot be
installed here are named with the reason (:data:`benchmarks.peers.UNAVAILABLE`).

Newton-Schulz throughput (:mod:`benchmarks.ns_floor`): for the Llama's Muon matrices, GFLOP/s of hf_muon's
batched Newton-Schulz against the bare same-shape matmul floor, in fp32 and bf16. Which one wins on CPU
depends on bf16 dot-product support (``avx512_bf16`` / AMX), recorded with the CPU model in every run.

Usage::

    python benchmarks/bench_step.py                       # full run, writes results/step.json and RESULTS.md
    python benchmarks/bench_step.py --tiny --allow-busy   # smoke test (< 60 s), writes results/step_tiny.json
    python benchmarks/bench_step.py --from-json benchmarks/results/step.json   # report only
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from benchmarks import cli
from benchmarks.models import MODEL_SEED, MODELS, STEP_MODELS
from benchmarks.ns_floor import NS_SEED, ns_throughput
from benchmarks.peers import UNAVAILABLE, ns_auto_dtype, step_peers
from benchmarks.reports import step as REPORT
from benchmarks.stepping import GRAD_SEED, GRAD_STD, add_ratios, any_contended, make_case, time_peers

SLOW_STEP_S = 30.0
FLOOR_MODELS = ("gpt2-small",)  # besides the target model: models whose NS floor is measured too
NS_DTYPES = ["float32", "bfloat16"]


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(
        __doc__, REPORT.NAME, tiny_help="very small models, 1 thread, 1 warmup + 2 timed steps (smoke test, < 60 s)"
    )
    cli.add_timing_args(ap, "model")
    ap.add_argument(
        "--models",
        nargs="+",
        choices=STEP_MODELS,
        default=list(STEP_MODELS),
        metavar="MODEL",
        help=f"subset of: {', '.join(STEP_MODELS)}",
    )
    ap.add_argument(
        "--slow-step-s",
        type=float,
        default=SLOW_STEP_S,
        help="a step slower than this is timed once, after one warmup (default 30)",
    )
    return ap.parse_args(argv)


def measure(args, load: dict, device) -> None:
    warmup = cli.warmup_of(args)
    started = time.time()
    data = cli.begin(
        args, "step", load, {"model": MODEL_SEED, "grads": GRAD_SEED, "ns_inputs": NS_SEED, "grad_std": GRAD_STD}
    )
    data.update(float32_matmul_precision=torch.get_float32_matmul_precision(), models={}, ns_throughput=None)
    lineup = step_peers(device)
    for model_name in args.models:
        spec = MODELS[model_name]
        repeats = args.repeats or (2 if args.tiny else spec.repeats)
        t0 = time.time()
        case = make_case(model_name, spec.build(args.tiny), device, spec.moe_experts)
        info = case.summary()
        print(
            f"\n== {model_name}: {info['params']:,} params, {info['muon_params']:,} on Muon "
            f"({info['muon_tensors']} tensors); warmup {warmup}, {repeats} timed steps",
            flush=True,
        )
        records = time_peers(
            case, lineup, tiny=args.tiny, device=device, warmup=warmup, repeats=repeats, slow_s=args.slow_step_s
        )
        for r in records:
            shown = f"{r['step_ms']:.2f} ms" if r["status"] == "ok" else f"FAILED ({r['reason'][:160]})"
            print(f"  {r['name']:<44} {shown}", flush=True)
        add_ratios(records)
        data["models"][model_name] = {
            **info,
            "config": case.routed.model.config.to_diff_dict(),
            "warmup": warmup,
            "repeats": repeats,
            "optimizers": records,
            "seconds": time.time() - t0,
        }
        if model_name == REPORT.TARGET_MODEL:
            data["ns_throughput"] = ns_throughput(
                model_name,
                [p.shape for p in case.muon],
                device,
                NS_DTYPES,
                warmup=warmup,
                repeats=3 if args.tiny else 20,
            )
        elif model_name in FLOOR_MODELS:  # the default dtype only: GPT-2 small's NS takes seconds per call
            default = str(ns_auto_dtype(device)).replace("torch.", "")
            data["models"][model_name]["ns_floor"] = ns_throughput(
                model_name, [p.shape for p in case.muon], device, [default], warmup=1, repeats=2 if args.tiny else 5
            )
        del case
        gc.collect()
    data["targets"] = REPORT.targets(data["models"], data["ns_throughput"], device.type, args.tiny)
    floors = [data["ns_throughput"] or {}] + [m.get("ns_floor") or {} for m in data["models"].values()]
    ns_rows = [
        row[k]
        for f in floors
        for row in f.get("rows", [])
        for k in f.get("variants", ("hf_muon_batched", "hf_muon_unbatched", "floor"))
    ]
    busy = any_contended([r for m in data["models"].values() for r in m["optimizers"]] + ns_rows)
    data["unavailable_peers"] = UNAVAILABLE
    cli.finish(data, started, busy)
    cli.publish(args, data, REPORT)


def main(argv: list[str] | None = None) -> int:
    return cli.run(parse_args(argv), REPORT, measure)


if __name__ == "__main__":
    sys.exit(main())
