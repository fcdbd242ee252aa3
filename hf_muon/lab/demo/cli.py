"""The demo's command line: :func:`parse_args`, :func:`main` (the whole run, printed and written) and :func:`cli`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ..data import resolve_data_dir
from .report import format_table, loss_table, save_plot, summarize
from .setup import FULL, LABELS, OPTIMIZERS, QUICK, build_config, build_model, keep_freed_memory
from .trainer import train_one

USAGE = "AdamW vs ``hf_muon.Muon`` on a tiny Llama, same seed, data, lr and schedule, through HF ``Trainer``."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (``--data``, ``--out``, ``--steps``, ``--seed``, ``--lr``, ``--quick`` ...)."""
    p = argparse.ArgumentParser(prog="python -m hf_muon.lab.demo", description=USAGE)
    p.add_argument(
        "--data",
        default=None,
        help="shared data mirror holding pretrain/ and tokenizers/ (default: $HF_MUON_DATA)",
    )
    p.add_argument("--out", default="runs/demo", help="output folder for demo.json and demo.png")
    p.add_argument("--corpus", default="tinystories", help="tinystories | tinyshakespeare | wikitext2 | c4")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"optimizer steps per run (default {FULL.steps}, --quick {QUICK.steps})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the initial weights and the data order")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate, the same for both optimizers")
    p.add_argument("--weight-decay", type=float, default=0.1, help="decoupled weight decay for both (matrices)")
    p.add_argument("--warmup", type=float, default=0.1, help="warmup: fraction of steps (<1) or steps (>=1)")
    p.add_argument("--batch-size", type=int, default=None, help="blocks per step")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma list out of: adamw, muon")
    p.add_argument("--quick", action="store_true", help="a handful of steps on a very small model (a smoke test)")
    args = p.parse_args(argv)
    root = resolve_data_dir(args.data)
    if root is None:
        p.error("--data is required (or set $HF_MUON_DATA): the folder holding pretrain/ and tokenizers/")
    args.data = args.data or str(root)
    args.optimizers = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
    bad = [o for o in args.optimizers if o not in OPTIMIZERS]
    if bad or not args.optimizers:
        p.error(f"--optimizers: unknown {bad}; valid: {', '.join(OPTIMIZERS)}")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if args.lr <= 0:
        p.error("--lr must be > 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the demo end to end; returns the dict written to ``demo.json``."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keep_freed_memory()
    setup = QUICK if args.quick else FULL

    import torch
    from transformers.utils import logging as hf_logging

    import hf_muon
    from hf_muon.lab.data import lm_blocks, load_text, load_tokenizer, train_val_split

    hf_logging.set_verbosity_error()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or setup.steps
    batch = args.batch_size or setup.batch_size

    tok = load_tokenizer(args.data)
    needed = setup.max_tokens
    blocks = lm_blocks(tok, load_text(args.data, args.corpus), setup.block_size, max_tokens=needed)
    train_ds, val_ds = train_val_split(blocks, val_fraction=0.1, max_val=setup.max_val_blocks)
    config = build_config(setup, len(tok), tok.eos_token_id)
    probe = build_model(config, args.seed)
    n_params = sum(p.numel() for p in probe.parameters())
    print(f"hf_muon {hf_muon.__version__} demo | torch {torch.__version__} | {torch.get_num_threads()} CPU threads")
    print(
        f"data: {args.corpus} -> {len(train_ds)} train / {len(val_ds)} val blocks of {setup.block_size} tokens "
        f"({len(train_ds) * setup.block_size:,} train tokens; {steps} steps x {batch} blocks = "
        f"{steps * batch / len(train_ds):.2f} epochs)"
    )
    print(
        f"model: LlamaForCausalLM hidden={setup.hidden} layers={setup.layers} heads={setup.heads} "
        f"intermediate={setup.intermediate} vocab={len(tok)} (tied) -> {n_params / 1e6:.2f}M params"
    )
    print(
        f"optim: lr={args.lr:g} (same for both), warmup {args.warmup:g} + cosine, weight_decay={args.weight_decay:g},"
        f" grad clip 1.0, fp32, seed {args.seed}"
    )
    print("routing (hf_muon.routing_report):")
    counts = hf_muon.routing_report(probe).splitlines()[-3:]
    print("\n".join("  " + line for line in counts))
    del probe

    results: dict[str, dict] = {}
    for name in args.optimizers:
        print(f"\n=== {LABELS[name]} ===", flush=True)
        with tempfile.TemporaryDirectory(prefix="hf_muon_demo_") as workdir:
            results[name] = train_one(name, config, train_ds, val_ds, args, setup, Path(workdir))
        r = results[name]
        print(
            f"{LABELS[name]}: {r['steps']} steps in {r['train_seconds']:.1f}s incl. evaluation "
            f"({r['steps'] / r['train_seconds']:.2f} steps/s); val loss {r['val_loss']:.4f}",
            flush=True,
        )

    names = list(results)
    rows = loss_table(results)
    print("\ntraining loss (Trainer logs: mean over each logging window)")
    print(format_table(rows, names))

    print("\nvalidation loss (held-out last blocks)")
    eval_steps = sorted({s for r in results.values() for s, _ in r["eval_curve"]})
    ev = {n: dict(results[n]["eval_curve"]) for n in names}
    print(f"{'step':>5} | " + " | ".join(f"{LABELS[n]:>8}" for n in names))
    for s in eval_steps:
        print(f"{s:>5} | " + " | ".join(f"{ev[n][s]:>8.4f}" if s in ev[n] else f"{'':>8}" for n in names))

    print("\nfinal validation")
    for n in names:
        r = results[n]
        print(
            f"  {LABELS[n]:<6} loss {r['val_loss']:.4f}  perplexity {r['val_perplexity']:.2f}  "
            f"(train+eval {r['train_seconds']:.1f}s)"
        )
    summary = summarize(results)
    if summary:
        verdict = "lower" if summary["val_loss_gap_muon_minus_adamw"] < 0 else "NOT lower"
        print(
            f"  Muon train loss below AdamW at {summary['logged_steps_muon_lower']}/"
            f"{summary['logged_steps_compared']} logged steps (mean gap "
            f"{summary['mean_train_loss_gap_muon_minus_adamw']:+.4f}); Muon final val loss is {verdict} "
            f"({summary['val_loss_gap_muon_minus_adamw']:+.4f})."
        )
        hit = summary["muon_step_reaching_adamw_final_train_loss"]
        print(
            f"  AdamW's final train loss {summary['adamw_final_train_loss']:.4f} (step "
            f"{summary['adamw_final_step']}) is reached by Muon at step "
            f"{hit if hit is not None else 'never (within this run)'}."
        )
        if args.quick:
            print("  (--quick is a smoke test: far too few steps on a 32-wide model to compare optimizers)")

    report = {
        "args": dict(vars(args)),
        "setup": vars(setup) | {"steps": steps, "batch_size": batch},
        "model": {"class": "LlamaForCausalLM", "params": n_params, **config.to_diff_dict()},
        "data": {
            "corpus": args.corpus,
            "train_blocks": len(train_ds),
            "val_blocks": len(val_ds),
            "block_size": setup.block_size,
        },
        "routing": [line.strip() for line in counts],
        "train_loss_table": rows,
        "results": results,
        "summary": summary,
        "versions": {
            "torch": torch.__version__,
            "hf_muon": hf_muon.__version__,
            "python": sys.version.split()[0],
        },
        "total_seconds": None,
    }
    plotted = save_plot(results, out / "demo.png")
    report["total_seconds"] = time.perf_counter() - t_start
    (out / "demo.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(
        f"\nwrote {out / 'demo.json'}"
        + (f" and {out / 'demo.png'}" if plotted else " (no matplotlib: no plot)")
        + f" | total {report['total_seconds']:.1f}s"
    )
    return report


def cli(argv: list[str] | None = None) -> None:
    """Entry point: :func:`main`, with missing data reported as one line instead of a traceback."""
    try:
        main(argv)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
