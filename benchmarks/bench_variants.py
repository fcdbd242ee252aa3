"""Update-rule variants: Muon, NorMuon, AdaMuon, Muon + cautious weight decay and per-head Muon against AdamW, on
bench_convergence's harness and data, each at its best learning rate and over three seeds; plus QK-Clip.

What is measured
----------------
The model, data, schedule, clipping, decay and evaluation are bench_convergence's (``training.py``: the
h128-L4 Llama, ≈1.8M params, TinyStories re-indexed to 4,097 ids, batch 8×128, 400 steps, warmup 10% then
cosine to 10%, clip 1.0, decay 0.1 on ≥2-D weights, validation every 25 steps on the same 48 held-out blocks).
A *seed* s changes the initial weights (``convergence_llama(seed=s)``) and the batch order
(``batch_order(seed=DATA_SEED + s)``); seed 0 is bench_convergence's run exactly.

1. lr sweep on seed 0: AdamW at 1e-3, 3e-3, 1e-2; each hf_muon variant at 3e-3, 1e-2, 3e-2 (moonlight scale:
   AdamW-sized lrs; bench_convergence found 3e-3 best for AdamW and 1e-2 for Muon):
   ``muon`` (defaults), ``normuon`` (``variant=normuon``), ``adamuon`` (``variant=adamuon``), ``cautious``
   (``cautious_wd=True``), ``per_head`` (``per_head=True``).
2. each family's best seed-0 lr (lowest final validation loss) again on seeds 1 and 2: final validation loss
   mean ± std (sample std over the 3 seeds), the first evaluation at or below AdamW's best mean final loss
   (and Muon's), the median training-step time, and the optimizer's state bytes (every state tensor after one
   step, counted once: :meth:`benchmarks.peers.Stepper.state_bytes`).
3. QK-Clip: Muon at a high lr (``--qk-lr``) twice on seed 0, once with ``qk_clip=τ`` (``--qk-tau``) and once
   with the capture on and no clip (τ = 1e9: the capture changes no number, only records), the step's max
   pre-softmax logit over all heads logged every step (``QKClip.last["qk_clip_max_logit"]``, before that step's
   clip) and plotted.

Cost: ≈35-45 s a run on 2 idle cores, 32 runs: ≈20-25 min. ``--tiny`` (hidden 32, 30 steps, one lr per family,
two seeds) writes ``results/variants_tiny.json`` only. Output: ``results/variants.json``,
``results/variants_loss.png``, ``results/variants_qk_clip.png`` and the ``variants`` section of ``RESULTS.md``.

Usage::

    nice -n 10 python benchmarks/bench_variants.py --allow-busy > variants.log   # full run
    python benchmarks/bench_variants.py --tiny --allow-busy                      # smoke test
    python benchmarks/bench_variants.py --from-json benchmarks/results/variants.json
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from benchmarks import cli, peers
from benchmarks.bench_convergence import FULL, TINY
from benchmarks.machine import contended
from benchmarks.models import MODEL_SEED, convergence_llama
from benchmarks.reports import variants as REPORT
from benchmarks.reports.convergence import fmt_loss
from benchmarks.reports.format import fmt_ms
from benchmarks.training import (
    CLIP_NORM,
    DATA_SEED,
    MIN_LR_RATIO,
    WARMUP_FRACTION,
    WEIGHT_DECAY,
    RunSpec,
    batch_order,
    prepare_data,
    train_run,
    warmup_steps,
)

ADAMW_LRS = (1e-3, 3e-3, 1e-2)
MUON_LRS = (3e-3, 1e-2, 3e-2)
SEEDS = (0, 1, 2)
QK_LR, QK_TAU = 0.1, 30.0
UNCLIPPED = 1e9  # a τ no logit reaches: the capture runs, nothing is clipped


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(
        __doc__,
        REPORT.NAME,
        plots="the PNGs",
        tiny_help="hidden-32 model, 30 steps, one lr per family, two seeds (smoke test)",
    )
    ap.add_argument("--data", default=None, help="data mirror (default $HF_MUON_DATA, else ../shared/data)")
    ap.add_argument("--qk-lr", type=float, default=QK_LR, help="lr of the two QK-Clip runs (default %(default)s)")
    ap.add_argument("--qk-tau", type=float, default=QK_TAU, help="QK-Clip τ of the clipped run (default %(default)s)")
    return ap.parse_args(argv)


def traced(knobs: dict, trace: list) -> peers.Build:
    """hf_muon with ``knobs``, appending each step's max logit (before its clip) to ``trace``."""
    inner = peers.hf_muon_optimizer(**knobs)

    def build(r, lr, tiny):
        stepper = inner(r, lr, tiny)
        opt, step = stepper.optimizers[0], stepper.step

        def step_and_record():
            step()
            trace.append(opt.qk_clip.last.get("qk_clip_max_logit"))

        stepper.step = step_and_record
        return stepper

    return build


def state_bytes(build: peers.Build, base, lr: float) -> int:
    """State bytes of a family's optimizer after one step on unit gradients (every state tensor, counted once)."""
    model = copy.deepcopy(base)
    stepper = build(peers.Routed(model, weight_decay=WEIGHT_DECAY), lr, False)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    stepper.step()
    return stepper.state_bytes()


def measure(args, load: dict, device) -> None:
    from hf_muon.lab.data import resolve_data_dir

    size = TINY if args.tiny else FULL
    steps, eval_every = size.steps, size.eval_every
    adamw_lrs, muon_lrs = ((3e-3,), (1e-2,)) if args.tiny else (ADAMW_LRS, MUON_LRS)
    seeds = SEEDS[:2] if args.tiny else SEEDS
    started = time.time()
    data = prepare_data(
        str(resolve_data_dir(args.data, required=True)),
        block=size.block,
        batch=size.batch,
        steps=steps,
        vocab_keep=size.vocab_keep,
        val_blocks=size.val_blocks,
        max_tokens=size.max_tokens,
    )
    bases = {
        s: convergence_llama(
            size.hidden, size.layers, size.intermediate, size.heads, size.block, data.vocab, seed=MODEL_SEED + s
        )
        for s in seeds
    }
    orders = {s: batch_order(len(data.train), steps, size.batch, DATA_SEED + s) for s in seeds}
    model_name = f"Llama h{size.hidden} L{size.layers} i{size.intermediate} heads {size.heads}"
    n_params = sum(p.numel() for p in bases[seeds[0]].parameters())
    ns_dtype = peers.ns_auto_dtype(device)
    builds = {
        "adamw": peers.adamw(),
        **{f: peers.hf_muon_optimizer(**knobs) for f, (_, knobs) in REPORT.FAMILIES.items()},
    }
    runs: list[dict] = []

    def run(family: str, lr: float, seed: int, build=None, note: str = "", name: str | None = None) -> dict:
        spec = RunSpec(name or f"{family} lr {lr:g} seed {seed}", family, lr, build or builds[family], note)
        r = train_run(
            spec,
            bases[seed],
            dataclasses.replace(data, order=orders[seed]),
            steps=steps,
            eval_every=eval_every,
            eval_batch=size.eval_batch,
            device=device,
        )
        r["seed"] = seed
        runs.append(r)
        print(
            f"  [{time.time() - started:6.0f} s] {spec.name:<34} final val {fmt_loss(r['final_val_loss'])}  "
            f"step {fmt_ms(r['step_ms_median'])} ms  {r['status']}",
            flush=True,
        )
        return r

    print(f"model: {model_name}, {n_params:,} params; {steps} steps; seeds {list(seeds)}", flush=True)
    for lr in adamw_lrs:
        run("adamw", lr, seeds[0], note="torch.optim.AdamW")
    for family, (label, knobs) in REPORT.FAMILIES.items():
        for lr in muon_lrs:
            run(family, lr, seeds[0], note=f"{label}: {knobs or 'defaults'}, NS {ns_dtype}")
    best = REPORT.best_lrs(runs)
    for family, lr in best.items():
        for seed in seeds[1:]:
            run(family, lr, seed, note="best seed-0 lr")
    traces: dict[str, list] = {}
    for key, tau in (("unclipped", UNCLIPPED), ("clipped", args.qk_tau)):
        traces[key] = []
        run(
            "qk_clip",
            args.qk_lr,
            seeds[0],
            build=traced({"qk_clip": tau}, traces[key]),
            name=f"QK-Clip {key} lr {args.qk_lr:g}",
            note=f"qk_clip={tau:g}",
        )["qk_clip_max_logit"] = traces[key]
    bytes_ = {f: state_bytes(builds[f], bases[seeds[0]], best.get(f, muon_lrs[0])) for f in builds}

    result = cli.begin(
        args, "variants", load, {"model": [MODEL_SEED + s for s in seeds], "data_order": [DATA_SEED + s for s in seeds]}
    )
    result.update(
        config={
            **asdict(size),
            "model": model_name,
            "params": n_params,
            "steps": steps,
            "eval_every": eval_every,
            "warmup_steps": warmup_steps(steps),
            "min_lr_ratio": MIN_LR_RATIO,
            "clip_norm": CLIP_NORM,
            "weight_decay": WEIGHT_DECAY,
            "adamw_lrs": list(adamw_lrs),
            "muon_lrs": list(muon_lrs),
            "seeds": list(seeds),
            "qk_lr": args.qk_lr,
            "qk_tau": args.qk_tau,
            "hf_muon_ns_dtype": ns_dtype,
            "schedule": f"linear warmup {WARMUP_FRACTION:g} of steps, cosine to {MIN_LR_RATIO:g}× peak",
        },
        data=data.info,
        runs=runs,
        best_lrs=best,
        state_bytes=bytes_,
    )
    result["summary"] = REPORT.summarize(result)
    cli.finish(result, started, any(contended(r.get("other_cores")) for r in runs))
    result["plots"] = cli.draw_plots(args, lambda folder: REPORT.plots(result, folder))
    cli.publish(args, result, REPORT)


def main(argv: list[str] | None = None) -> int:
    return cli.run(parse_args(argv), REPORT, measure)


if __name__ == "__main__":
    sys.exit(main())
