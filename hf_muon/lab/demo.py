"""AdamW vs ``hf_muon.Muon`` on a tiny Llama, same seed, data, lr and schedule, through HF ``Trainer``.

Run::

    python -m hf_muon.lab.demo --data ../shared/data --out runs/demo          # ~3 min on 2 CPU cores
    python -m hf_muon.lab.demo --data ../shared/data --out /tmp/q --quick     # smoke test, < 30 s

It builds a small ``LlamaForCausalLM`` from a config (GPT-2 vocabulary, 50,257 tokens; tied
embeddings), tokenizes the local TinyStories sample into fixed-length blocks (last ~10% held out),
and trains the same initial weights twice: once with ``torch.optim.AdamW`` and once with
``hf_muon.Muon`` (default ``moonlight`` scaling, so the AdamW learning rate is reused as is). Both
optimizers are handed to ``Trainer(optimizers=(opt, None))``, so the Trainer builds the same
warmup+cosine schedule for both. fp32, CPU.

Printed: the routing counts (which tensors Muon updates), both training-loss curves side by side,
validation loss at a few points and final validation loss / perplexity. Written to ``--out``:
``demo.json`` (table and numbers) and ``demo.png`` (the curves).

What to expect (2 CPU cores, defaults, 160 steps; validation loss, lower is better): AdamW 5.54,
Muon 4.39. The comparison is at one shared lr, and AdamW is past its best there (a loss spike near
step 30). In a small sweep of that setup AdamW did best at 2e-3 (4.99), and Muon beat that at every
lr from 2e-3 up (4.59 at 2e-3, 4.11 at 1e-2). At 1e-3 the two were close (5.26 vs 5.22). Muon's gain
here comes from staying stable, and improving, at learning rates where AdamW's hidden matrices do not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

OPTIMIZERS = ("adamw", "muon")
LABELS = {"adamw": "AdamW", "muon": "Muon"}


@dataclass
class Setup:
    """Model and data sizes of one demo flavour (full or ``--quick``)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    block_size: int
    batch_size: int
    steps: int
    max_tokens: int | None
    max_val_blocks: int
    logging_steps: int
    eval_points: int


FULL = Setup(
    hidden=128,
    layers=4,
    heads=4,
    intermediate=344,
    block_size=128,
    batch_size=8,
    steps=160,
    max_tokens=None,
    max_val_blocks=48,
    logging_steps=5,
    eval_points=4,
)
QUICK = Setup(
    hidden=32,
    layers=2,
    heads=2,
    intermediate=64,
    block_size=32,
    batch_size=4,
    steps=8,
    max_tokens=6_000,
    max_val_blocks=8,
    logging_steps=2,
    eval_points=1,
)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of returning it to the OS.

    Every step allocates fp32 logits of batch x seq x 50,257 (~200 MB) plus their gradients. glibc
    serves such blocks with ``mmap`` and unmaps them on free, so each step page-faults ~1 GB of fresh
    zeroed pages; on small VMs that kernel time was ~40% of the step (0.54 s -> 0.30 s per step with
    this). Only this demo process is affected; a no-op off glibc. Returns True when applied.
    """
    if not sys.platform.startswith("linux") or os.environ.get("HF_MUON_DEMO_MALLOC", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
        return bool(ok and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1)
    except (OSError, AttributeError):
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (``--data``, ``--out``, ``--steps``, ``--seed``, ``--lr``, ``--quick`` ...)."""
    p = argparse.ArgumentParser(prog="python -m hf_muon.lab.demo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        default=os.environ.get("HF_MUON_DATA"),
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
    p.add_argument(
        "--weight-decay", type=float, default=0.1, help="decoupled weight decay for both (matrices)"
    )
    p.add_argument("--warmup", type=float, default=0.1, help="warmup: fraction of steps (<1) or steps (>=1)")
    p.add_argument("--batch-size", type=int, default=None, help="blocks per step")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma list out of: adamw, muon")
    p.add_argument(
        "--quick", action="store_true", help="a handful of steps on a very small model (a smoke test)"
    )
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data is required (or set $HF_MUON_DATA): the folder holding pretrain/ and tokenizers/")
    args.optimizers = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
    bad = [o for o in args.optimizers if o not in OPTIMIZERS]
    if bad or not args.optimizers:
        p.error(f"--optimizers: unknown {bad}; valid: {', '.join(OPTIMIZERS)}")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if args.lr <= 0:
        p.error("--lr must be > 0")
    return args


def build_config(setup: Setup, vocab_size: int, eos_id: int):
    """A tiny ``LlamaConfig`` (tied input/output embeddings, fp32)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=setup.hidden,
        num_hidden_layers=setup.layers,
        num_attention_heads=setup.heads,
        num_key_value_heads=setup.heads,
        intermediate_size=setup.intermediate,
        max_position_embeddings=max(256, setup.block_size),
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        dtype="float32",
    )


def build_model(config, seed: int):
    """``LlamaForCausalLM(config)`` with weights drawn from ``seed`` (identical for every run)."""
    import torch
    from transformers import LlamaForCausalLM, set_seed

    set_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    return model


def make_optimizer(name: str, model, lr: float, weight_decay: float):
    """``torch.optim.AdamW`` or ``hf_muon.Muon`` with the same lr, betas and decay convention.

    Both decay ≥2-D weights and leave 1-D ones (norms) undecayed. Muon routes the hidden matrices to
    Muon and embeddings/norms to its internal AdamW groups (see :func:`hf_muon.param_groups`).
    """
    import torch

    import hf_muon

    if name == "adamw":
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if name == "muon":
        groups = hf_muon.param_groups(model, weight_decay=weight_decay)
        return hf_muon.Muon(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), eps=1e-8)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def _progress_callback_cls():
    """A Trainer progress bar that shows the loss on the bar and prints only evaluation lines."""
    from transformers.trainer_callback import ProgressCallback

    class _DemoProgress(ProgressCallback):
        def __init__(self, label: str):
            super().__init__()
            self.label = label

        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None:
                self.training_bar.set_description(self.label)

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            pass  # evaluation is a few batches: no second bar

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is None or not logs:
                return
            if "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)
            if "eval_loss" in logs:
                self.training_bar.write(
                    f"  [{self.label}] step {state.global_step:>4}: val loss {logs['eval_loss']:.4f}"
                )

    return _DemoProgress


def train_one(name: str, config, train_ds, val_ds, args, setup: Setup, workdir: Path) -> dict:
    """Train one fresh copy of the model with optimizer ``name``; return its curves and final numbers."""
    from transformers import Trainer, TrainingArguments, default_data_collator
    from transformers.trainer_callback import ProgressCallback

    model = build_model(config, args.seed)
    optimizer = make_optimizer(name, model, args.lr, args.weight_decay)
    groups = optimizer.describe() if hasattr(optimizer, "describe") else None  # peak lrs, before the schedule
    steps = args.steps or setup.steps
    eval_steps = math.ceil(steps / max(1, setup.eval_points))  # the last evaluation lands on the last step
    targs = TrainingArguments(
        output_dir=str(workdir / name),  # nothing is saved (save_strategy="no")
        max_steps=steps,
        per_device_train_batch_size=args.batch_size or setup.batch_size,
        per_device_eval_batch_size=2 * (args.batch_size or setup.batch_size),
        learning_rate=args.lr,  # the optimizer's own group lrs are what the schedule scales
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup,
        max_grad_norm=1.0,
        logging_steps=setup.logging_steps,
        logging_first_step=True,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        fp16=False,
        seed=args.seed,
        data_seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=default_data_collator,
        optimizers=(optimizer, None),
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_progress_callback_cls()(LABELS[name]))

    initial = trainer.evaluate()["eval_loss"]
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    history = trainer.state.log_history
    at_end = [h["eval_loss"] for h in history if "eval_loss" in h and h["step"] == trainer.state.global_step]
    final = at_end[-1] if at_end else trainer.evaluate()["eval_loss"]

    train_curve = [(h["step"], h["loss"]) for h in history if "loss" in h and "eval_loss" not in h]
    # log_history holds the initial evaluation as step 0 and the final one at the last step
    evals: dict[int, float] = {}
    for h in history:
        if "eval_loss" in h:
            evals[h["step"]] = h["eval_loss"]
    evals[0] = initial
    evals[steps] = final
    result = {
        "optimizer": name,
        "train_curve": train_curve,
        "eval_curve": sorted(evals.items()),
        "initial_val_loss": initial,
        "val_loss": final,
        "val_perplexity": math.exp(final) if final < 50 else float("inf"),
        "train_seconds": train_s,
        "steps": steps,
    }
    if groups is not None:
        result["groups"] = [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()} for row in groups
        ]
    return result


def loss_table(results: dict[str, dict]) -> list[dict]:
    """Rows ``{"step": s, "adamw": loss | None, "muon": loss | None}`` over every logged step."""
    curves = {name: dict(r["train_curve"]) for name, r in results.items()}
    steps = sorted({s for c in curves.values() for s in c})
    return [{"step": s, **{name: curves[name].get(s) for name in results}} for s in steps]


def format_table(rows: list[dict], names: list[str]) -> str:
    """The side-by-side loss table as aligned text, with a Muon − AdamW column when both ran."""
    both = "adamw" in names and "muon" in names
    head = f"{'step':>5} | " + " | ".join(f"{LABELS[n] + ' train loss':>16}" for n in names)
    head += " | Muon - AdamW" if both else ""
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = [f"{row[n]:>16.4f}" if row[n] is not None else f"{'':>16}" for n in names]
        line = f"{row['step']:>5} | " + " | ".join(cells)
        if both and row["adamw"] is not None and row["muon"] is not None:
            line += f" | {row['muon'] - row['adamw']:>+12.4f}"
        lines.append(line)
    return "\n".join(lines)


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """First logged step whose training loss is at or below ``target`` (None if never)."""
    return next((s for s, loss in curve if loss <= target), None)


def summarize(results: dict[str, dict]) -> dict:
    """Head-to-head numbers when both optimizers ran (empty dict otherwise)."""
    if not {"adamw", "muon"} <= set(results):
        return {}
    a, m = results["adamw"], results["muon"]
    rows = [r for r in loss_table(results) if r["adamw"] is not None and r["muon"] is not None]
    later = [r for r in rows if r["step"] > 1]  # step 1 is the same initial weights for both
    target = a["train_curve"][-1][1]
    return {
        "logged_steps_compared": len(later),
        "logged_steps_muon_lower": sum(r["muon"] < r["adamw"] for r in later),
        "mean_train_loss_gap_muon_minus_adamw": sum(r["muon"] - r["adamw"] for r in later)
        / max(1, len(later)),
        "val_loss_gap_muon_minus_adamw": m["val_loss"] - a["val_loss"],
        "adamw_final_train_loss": target,
        "muon_step_reaching_adamw_final_train_loss": steps_to_reach(m["train_curve"], target),
        "adamw_final_step": a["train_curve"][-1][0],
    }


def save_plot(results: dict[str, dict], path: Path) -> bool:
    """Training and validation loss curves as a PNG (matplotlib, Agg); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        xs, ys = zip(*r["train_curve"], strict=True)
        ax1.plot(xs, ys, label=LABELS[name], marker=".")
        xs, ys = zip(*r["eval_curve"], strict=True)
        ax2.plot(xs, ys, label=f"{LABELS[name]} (final {r['val_loss']:.3f})", marker="o")
    ax1.set(title="training loss", xlabel="optimizer step", ylabel="cross-entropy")
    ax2.set(title="validation loss (held-out blocks)", xlabel="optimizer step", ylabel="cross-entropy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


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
    print(
        f"hf_muon {hf_muon.__version__} demo | torch {torch.__version__} | {torch.get_num_threads()} CPU threads"
    )
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


if __name__ == "__main__":
    cli()
