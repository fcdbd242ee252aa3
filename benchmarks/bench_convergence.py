"""Convergence: validation loss vs optimizer steps and vs training wall-clock on real text.

What is measured
----------------
One small Llama (hidden 128, 4 layers, intermediate 344, 4 heads, untied embeddings, fp32, ≈1.8M
params; :func:`benchmarks.models.convergence_llama`) is trained from the *same* initial weights, on the
*same* batches in the *same* order, with the same schedule, by each optimizer run below. Every
``--eval-every`` steps (and at step 0 and the last step) the mean per-token cross-entropy over the held-out
validation blocks is recorded together with the cumulative **training** wall time (forward, backward,
clipping, optimizer and scheduler steps; data indexing and evaluation are not counted).

Data: TinyStories (the head of its validation split in the local mirror ``<data>/pretrain``), tokenized
with GPT-2's BPE, cut into consecutive 128-token blocks; the last 48 blocks are held out. To keep the output
layer cheap, token ids are **re-indexed**: the 4,096 GPT-2 ids most frequent in the *training* blocks keep
an id each, every other id becomes one shared "other" id (vocabulary 4,097, ≈99.6% of training tokens keep
their own id). Losses are over this 4,097-way vocabulary: comparable between runs here, not with
GPT-2-vocabulary losses.

Training: batch 8 × 128 tokens, 400 steps (≈2.2 passes over the ≈1,480 training blocks; each pass a fresh
seeded permutation, identical for every run), linear warmup over the first 10% of steps then a cosine decay
to 10% of the peak lr (one ``LambdaLR`` per optimizer), gradient clipping at norm 1.0, decoupled weight decay
0.1 on ≥2-D weights and none on norms (hf_muon's routing convention, applied to every optimizer). Runs
(optimizers from :mod:`benchmarks.peers`):

* ``torch.optim.AdamW`` at lr 1e-3, 3e-3, 1e-2, 3e-2 (betas (0.9, 0.999)); the best is reported.
* ``torch.optim.Muon`` **at its defaults** (lr 1e-3, its default ``adjust_lr_fn``, momentum 0.95, Nesterov,
  weight decay 0.1) on the parameters ``hf_muon.route`` sends to Muon, torch AdamW (lr 1e-3) on the rest.
* hf_muon (``create_optimizer`` with ``MuonConfig(lr=…, weight_decay=0.1)``: Polar Express, moonlight
  scaling, AdamW-sized lrs, the same lr for its AdamW groups) at lr 1e-3, 3e-3, 1e-2, 3e-2.
* hf_muon with ``coefficients="keller"`` at the best hf_muon lr: Polar Express vs Keller at equal steps.

Targets (printed with the measured value and MET / NOT MET; nothing is tuned to meet them): the best hf_muon
run reaches the best AdamW run's final validation loss within ≤ 0.7× of the total steps (first evaluation
point at or below it, so the resolution is ``--eval-every``), and Polar Express's final loss ≤ Keller's. One
seed per run: small differences may not be significant. Runs are trained one after another (wall-clock is
cumulative per run); other processes' CPU use is recorded per run and flagged CONTENDED.

Cost: a training step takes ≈75-95 ms with 2 threads, an evaluation ≈0.15 s, so one run is ≈35 s and the 10
runs ≈6 minutes on 2 CPU cores. Output: ``results/convergence.json``, ``results/convergence_steps.png``,
``results/convergence_time.png`` and the ``convergence`` section of ``RESULTS.md``. ``--tiny`` (a 2-layer
hidden-32 model, 30 steps, < 60 s) writes ``results/convergence_tiny.json`` only; its plots go to a
temporary folder that is removed.

Usage::

    python benchmarks/bench_convergence.py                      # full run (~6 min on 2 idle cores)
    python benchmarks/bench_convergence.py --tiny --allow-busy  # smoke test
    python benchmarks/bench_convergence.py --from-json benchmarks/results/convergence.json  # report only
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import cli, peers
from benchmarks.machine import contended
from benchmarks.models import MODEL_SEED, convergence_llama
from benchmarks.reports import convergence as REPORT
from benchmarks.reports.convergence import fmt_loss
from benchmarks.reports.format import fmt_ms
from benchmarks.training import (
    CLIP_NORM,
    DATA_SEED,
    MIN_LR_RATIO,
    WARMUP_FRACTION,
    WEIGHT_DECAY,
    RunSpec,
    prepare_data,
    train_run,
    warmup_steps,
)

LRS = (1e-3, 3e-3, 1e-2, 3e-2)
TORCH_MUON_LR = 1e-3  # torch.optim.Muon's default lr


@dataclass(frozen=True)
class Size:
    """Model, data and schedule sizes of one configuration (full or --tiny)."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    vocab_keep: int  # most frequent GPT-2 ids kept; one more id stands for every other token
    block: int
    batch: int
    steps: int
    eval_every: int
    val_blocks: int
    eval_batch: int
    max_tokens: int | None  # cap on tokenized text (None: the whole corpus file)


FULL = Size(
    hidden=128,
    layers=4,
    intermediate=344,
    heads=4,
    vocab_keep=4096,
    block=128,
    batch=8,
    steps=400,
    eval_every=25,
    val_blocks=48,
    eval_batch=16,
    max_tokens=None,
)
TINY = Size(
    hidden=32,
    layers=2,
    intermediate=86,
    heads=4,
    vocab_keep=256,
    block=32,
    batch=4,
    steps=30,
    eval_every=10,
    val_blocks=8,
    eval_batch=8,
    max_tokens=20_000,
)


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(
        __doc__,
        REPORT.NAME,
        plots="the PNGs",
        tiny_help="hidden-32 2-layer model, 30 steps, 1 thread (smoke test, < 60 s); no RESULTS.md",
    )
    ap.add_argument("--data", default=None, help="data mirror (default $HF_MUON_DATA, else ../shared/data)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default 400, tiny 30)")
    ap.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default 25, tiny 10)")
    ap.add_argument(
        "--lrs", type=float, nargs="+", default=list(LRS), help="lr grid for AdamW and hf_muon (default: %(default)s)"
    )
    return ap.parse_args(argv)


def measure(args, load: dict, device) -> None:
    from hf_muon.lab.data import resolve_data_dir

    size = TINY if args.tiny else FULL
    steps = args.steps or size.steps
    eval_every = args.eval_every or size.eval_every
    lrs = tuple(sorted(args.lrs))
    started = t0 = time.time()
    data = prepare_data(
        str(resolve_data_dir(args.data, required=True)),
        block=size.block,
        batch=size.batch,
        steps=steps,
        vocab_keep=size.vocab_keep,
        val_blocks=size.val_blocks,
        max_tokens=size.max_tokens,
    )
    print(
        f"data: {data.info['train_blocks']} train / {data.info['val_blocks']} val blocks of {size.block}, "
        f"vocab {data.vocab} ({100 * data.info['other_fraction_train']:.2f}% 'other'), "
        f"{data.info['epochs']:.2f} passes; {time.time() - t0:.1f} s",
        flush=True,
    )
    base = convergence_llama(size.hidden, size.layers, size.intermediate, size.heads, size.block, data.vocab)
    n_params = sum(p.numel() for p in base.parameters())
    model_name = f"Llama h{size.hidden} L{size.layers} i{size.intermediate}"
    ns_dtype = peers.ns_auto_dtype(device)
    specs = [RunSpec(f"AdamW lr {lr:g}", "adamw", lr, peers.adamw(), "torch.optim.AdamW") for lr in lrs]
    specs.append(
        RunSpec(
            "torch.optim.Muon (defaults) + AdamW",
            "torch_muon",
            TORCH_MUON_LR,
            peers.torch_muon(),
            "torch.optim.Muon defaults (adjust_lr_fn=None) on hf_muon's Muon set; torch AdamW lr 1e-3 on the rest",
        )
    )
    specs += [
        RunSpec(
            f"hf_muon lr {lr:g}",
            "hf_muon",
            lr,
            peers.hf_muon_optimizer(coefficients="polar_express"),
            f"polar_express, moonlight scale, NS {ns_dtype}",
        )
        for lr in lrs
    ]
    print(
        f"model: {model_name}, {n_params:,} params; {steps} steps of {size.batch}×{size.block} tokens; "
        f"{len(specs) + 1} runs",
        flush=True,
    )
    runs: list[dict] = []

    def run(spec: RunSpec) -> None:
        r = train_run(spec, base, data, steps=steps, eval_every=eval_every, eval_batch=size.eval_batch, device=device)
        runs.append(r)
        print(
            f"  {spec.name:<40} final val {fmt_loss(r['final_val_loss'])}  train {r['train_seconds']:6.1f} s  "
            f"step {fmt_ms(r['step_ms_median'])} ms  {r['status']}",
            flush=True,
        )

    for spec in specs:
        run(spec)
    best_hf = REPORT.best_of(runs, "hf_muon")
    keller_lr = best_hf["lr"] if best_hf is not None else lrs[0]
    run(
        RunSpec(
            f"hf_muon keller lr {keller_lr:g}",
            "hf_muon_keller",
            keller_lr,
            peers.hf_muon_optimizer(coefficients="keller"),
            f"coefficients=keller at hf_muon's best lr, NS {ns_dtype}",
        )
    )

    summary, targets = REPORT.summarize(runs, steps, lrs, args.tiny)
    result = cli.begin(args, "convergence", load, {"model": MODEL_SEED, "data_order": DATA_SEED})
    result.update(
        config={
            **asdict(size),
            "model": model_name,
            "params": n_params,
            "steps": steps,
            "eval_every": eval_every,
            "warmup_steps": warmup_steps(steps),
            "schedule": f"linear warmup {WARMUP_FRACTION:g} of steps, cosine to {MIN_LR_RATIO:g}× peak",
            "min_lr_ratio": MIN_LR_RATIO,
            "clip_norm": CLIP_NORM,
            "weight_decay": WEIGHT_DECAY,
            "lrs": list(lrs),
            "hf_muon_ns_dtype": ns_dtype,
            "model_config": base.config.to_diff_dict(),
        },
        data=data.info,
        runs=runs,
        summary=summary,
        targets=targets,
    )
    cli.finish(result, started, any(contended(r.get("other_cores")) for r in runs))
    result["plots"] = cli.draw_plots(args, lambda folder: REPORT.plots(result, folder))
    cli.publish(args, result, REPORT)
    shown = ", ".join(result["plots"].values()) if isinstance(result["plots"], dict) else result["plots"]
    print(f"plots: {shown}")


def main(argv: list[str] | None = None) -> int:
    return cli.run(parse_args(argv), REPORT, measure)


if __name__ == "__main__":
    sys.exit(main())
