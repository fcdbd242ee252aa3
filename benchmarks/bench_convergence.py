"""Convergence: validation loss vs optimizer steps and vs training wall-clock on real text.

What is measured
----------------
One small Llama (hidden 128, 4 layers, intermediate 344, 4 heads, untied embeddings, fp32, ≈1.8M
params) is trained from the *same* initial weights, on the *same* batches in the *same* order, with
the same schedule, by each optimizer run below. Every ``--eval-every`` steps (and at step 0 and the
last step) the mean per-token cross-entropy over the held-out validation blocks is recorded together
with the cumulative **training** wall time (forward, backward, clipping, optimizer and scheduler
steps; data indexing and evaluation are not counted).

Data: TinyStories (the head of its validation split in the local mirror ``<data>/pretrain``),
tokenized with GPT-2's BPE (:mod:`hf_muon.lab.data`), cut into consecutive 128-token blocks; the last 48
blocks are held out (:func:`hf_muon.lab.data.train_val_split`). To keep the output layer cheap, token ids
are **re-indexed**: the 4,096 GPT-2 ids most frequent in the *training* blocks keep an id each (by
descending count), every other id becomes one shared "other" id, so the model's vocabulary is 4,097
(≈99.6% of training tokens keep their own id). The text and its token order are real; losses are over
this 4,097-way vocabulary, so they are comparable between runs here, not with GPT-2-vocabulary losses.

Training: batch 8 × 128 tokens, 400 steps (≈2.2 passes over the ≈1,480 training blocks; each pass a
fresh seeded permutation, identical for every run), linear warmup over the first 10% of steps then a
cosine decay to 10% of the peak lr (one ``LambdaLR`` per optimizer), gradient clipping at norm 1.0,
decoupled weight decay 0.1 on ≥2-D weights and none on norms (hf_muon's routing convention, applied to
every optimizer). Runs:

* ``torch.optim.AdamW`` at lr 1e-3, 3e-3, 1e-2, 3e-2 (betas (0.9, 0.999)); the best is reported.
* ``torch.optim.Muon`` **at its defaults** (lr 1e-3, its default ``adjust_lr_fn``, momentum 0.95,
  Nesterov, weight decay 0.1) on the parameters that ``hf_muon.route`` sends to Muon (the 2-D hidden
  matrices), ``torch.optim.AdamW`` (lr 1e-3, same decay groups) on the rest.
* ``hf_muon.Muon(hf_muon.param_groups(model), lr=…)`` (Polar Express coefficients, moonlight scaling:
  AdamW-sized lrs; the same lr for its AdamW groups) at lr 1e-3, 3e-3, 1e-2, 3e-2; the best is reported.
* ``hf_muon`` with ``coefficients="keller"`` at the best hf_muon lr: Polar Express vs Keller at equal
  steps.

Targets (printed with the measured value and MET / NOT MET; nothing is tuned to meet them): the best
hf_muon run reaches the best AdamW run's final validation loss within ≤ 0.7× of the total steps (first
evaluation point at or below it, so the resolution is ``--eval-every``), and Polar Express's final loss
≤ Keller's. One seed per run: no seed-to-seed spread is measured, so small differences may not be
significant.

Cost (sized to fit in ~8 minutes on 2 CPU cores): a training step takes ≈75-95 ms with 2 threads
(measured with one other core's worth of load; ≈130 ms with 1 thread), an evaluation ≈0.15 s, so one
run is ≈35 s and the 10 runs ≈6 minutes (up to ≈9-10 minutes if the 2 threads give no speed-up).

Output: ``results/convergence.json`` (every evaluation point of every run), ``results/convergence_steps.png``
(val loss vs steps), ``results/convergence_time.png`` (val loss vs training seconds) and the
``convergence`` section of ``RESULTS.md``. ``--tiny`` (a 2-layer hidden-32 model, 30 steps, < 60 s)
writes ``results/convergence_tiny.json`` only; its plots go to a temporary folder that is removed.

Usage::

    python benchmarks/bench_convergence.py                      # full run (~6 min on 2 idle cores)
    python benchmarks/bench_convergence.py --tiny --allow-busy  # smoke test
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

import hf_muon  # noqa: E402
from hf_muon.ns.newton_schulz import resolve_dtype  # noqa: E402

MODEL_SEED = 0
DATA_SEED = 1
WEIGHT_DECAY = 0.1
CLIP_NORM = 1.0
WARMUP_FRACTION = 0.1
MIN_LR_RATIO = 0.1
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
TORCH_MUON_LR = 1e-3  # torch.optim.Muon's default lr
TARGET_STEP_FRACTION = 0.7


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


# --------------------------------------------------------------------------- data
@dataclass
class Data:
    train: torch.Tensor  # (n_train, block) re-indexed ids
    val: torch.Tensor  # (n_val, block)
    order: torch.Tensor  # (steps, batch) indices into train: the batches, in order
    vocab: int
    info: dict


def default_data_dir() -> str:
    return os.environ.get("HF_MUON_DATA") or str(common.REPO_DIR.parent / "shared" / "data")


def prepare_data(size: Size, data_dir: str, steps: int) -> Data:
    """TinyStories → GPT-2 ids → blocks → held-out tail → ids re-indexed by training-set frequency."""
    from hf_muon.lab.data import lm_blocks, load_text, load_tokenizer, train_val_split

    tok = load_tokenizer(data_dir)
    blocks = lm_blocks(
        tok, load_text(data_dir, "tinystories"), block_size=size.block, max_tokens=size.max_tokens
    )
    train_ds, val_ds = train_val_split(blocks, val_fraction=0.1, max_val=size.val_blocks)
    train = torch.tensor(train_ds["input_ids"], dtype=torch.long)
    val = torch.tensor(val_ds["input_ids"], dtype=torch.long)

    counts = torch.bincount(train.flatten(), minlength=len(tok))
    keep = torch.argsort(counts, descending=True, stable=True)[: size.vocab_keep]  # ties: lower id first
    other = size.vocab_keep
    remap = torch.full((len(tok),), other, dtype=torch.long)
    remap[keep] = torch.arange(size.vocab_keep)
    train, val = remap[train], remap[val]

    gen = torch.Generator().manual_seed(DATA_SEED)
    need = steps * size.batch
    perms = [torch.randperm(len(train), generator=gen) for _ in range(math.ceil(need / len(train)))]
    order = torch.cat(perms)[:need].view(steps, size.batch)
    info = {
        "corpus": "tinystories (mirror: pretrain/tinystories_validation_head.txt)",
        "tokenizer": "gpt2",
        "data_dir": data_dir,
        "block": size.block,
        "train_blocks": len(train),
        "val_blocks": len(val),
        "train_tokens": train.numel(),
        "val_tokens": val.numel(),
        "gpt2_ids_seen_in_train": int((counts > 0).sum()),
        "vocab_keep": size.vocab_keep,
        "model_vocab": size.vocab_keep + 1,
        "other_fraction_train": float((train == other).float().mean()),
        "other_fraction_val": float((val == other).float().mean()),
        "epochs": need / len(train),
    }
    return Data(train, val, order, size.vocab_keep + 1, info)


# --------------------------------------------------------------------------- model and optimizers
def build_model(size: Size, vocab: int) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    common.seed_everything(MODEL_SEED)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=size.block,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config).float()


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[dict]]:
    """(hf_muon's Muon set, AdamW groups of everything else with hf_muon's decay convention)."""
    routes = [r for r in hf_muon.route(model) if r.kind != "frozen"]
    muon = [r.param for r in routes if r.kind == "muon"]
    decay = [r.param for r in routes if r.kind != "muon" and r.decay]
    no_decay = [r.param for r in routes if r.kind != "muon" and not r.decay]
    groups = [
        g
        for g in (dict(params=decay, weight_decay=WEIGHT_DECAY), dict(params=no_decay, weight_decay=0.0))
        if g["params"]
    ]
    return muon, groups


def all_adamw_groups(model: nn.Module) -> list[dict]:
    routes = [r for r in hf_muon.route(model) if r.kind != "frozen"]
    decay = [r.param for r in routes if r.decay]
    no_decay = [r.param for r in routes if not r.decay]
    return [
        g
        for g in (dict(params=decay, weight_decay=WEIGHT_DECAY), dict(params=no_decay, weight_decay=0.0))
        if g["params"]
    ]


def build_adamw(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
    return [torch.optim.AdamW(all_adamw_groups(model), lr=lr)]


def build_torch_muon(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
    muon, rest = split_params(model)
    return [torch.optim.Muon(muon, lr=lr), torch.optim.AdamW(rest, lr=lr)]


def hf_muon_builder(coefficients: str) -> Callable[[nn.Module, float], list[torch.optim.Optimizer]]:
    def build(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        return [
            hf_muon.Muon(
                hf_muon.param_groups(model, weight_decay=WEIGHT_DECAY),
                lr=lr,
                weight_decay=WEIGHT_DECAY,
                coefficients=coefficients,
            )
        ]

    return build


@dataclass
class RunSpec:
    name: str  # unique label of the run
    family: str  # "adamw" | "torch_muon" | "hf_muon" | "hf_muon_keller"
    lr: float
    build: Callable[[nn.Module, float], list[torch.optim.Optimizer]]
    note: str


def lr_lambda(steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr before step ``s + 1``: linear warmup, then cosine to MIN_LR_RATIO."""
    warmup = max(1, round(WARMUP_FRACTION * steps))

    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, steps - warmup))
        return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


# --------------------------------------------------------------------------- training
@torch.no_grad()
def evaluate(model: nn.Module, val: torch.Tensor, batch: int) -> float:
    """Mean cross-entropy per predicted token over all validation blocks."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(val), batch):
        x = val[i : i + batch]
        n = x.size(0) * (x.size(1) - 1)  # HF shifts labels: block-1 predictions per block
        total += float(model(input_ids=x, labels=x, use_cache=False).loss) * n
        count += n
    model.train()
    return total / count


def train_run(
    spec: RunSpec, base: nn.Module, data: Data, size: Size, steps: int, eval_every: int, device: torch.device
) -> dict:
    """Train a copy of ``base`` with one optimizer; a crash or non-finite loss ends the run with a status."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    model = copy.deepcopy(base).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    train, val, order = data.train.to(device), data.val.to(device), data.order.to(device)
    record: dict = {
        "name": spec.name,
        "family": spec.family,
        "lr": spec.lr,
        "note": spec.note,
        "status": "ok",
    }
    evals = [{"step": 0, "train_seconds": 0.0, "val_loss": evaluate(model, val, size.eval_batch)}]
    step_ms: list[float] = []
    train_losses: list[float] = []
    seconds = 0.0
    with common.OtherProcesses() as others:
        try:
            optimizers = spec.build(model, spec.lr)
            f = lr_lambda(steps)
            schedulers = [torch.optim.lr_scheduler.LambdaLR(o, f) for o in optimizers]
            for step in range(1, steps + 1):
                x = train[order[step - 1]]
                t0 = time.perf_counter()
                loss = model(input_ids=x, labels=x, use_cache=False).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
                for o in optimizers:
                    o.step()
                for s in schedulers:
                    s.step()
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                value = float(loss.detach())  # a host sync on CUDA: the step is complete when it returns
                if sync is not None:
                    sync()
                dt = time.perf_counter() - t0
                seconds += dt
                step_ms.append(dt * 1e3)
                train_losses.append(value)
                if not math.isfinite(value):
                    record["status"] = f"diverged (train loss {value} at step {step})"
                    break
                if step % eval_every == 0 or step == steps:
                    evals.append(
                        {
                            "step": step,
                            "train_seconds": seconds,
                            "val_loss": evaluate(model, val, size.eval_batch),
                        }
                    )
        except Exception as e:  # e.g. hf_muon's nonfinite="error"; reported, never dropped
            record["status"] = f"failed: {type(e).__name__}: {e}"[:400]
    ok = record["status"] == "ok"
    record.update(
        evals=evals,
        final_val_loss=evals[-1]["val_loss"] if ok else None,
        min_val_loss=min(e["val_loss"] for e in evals),
        train_seconds=seconds,
        steps_done=len(step_ms),
        step_ms_median=statistics.median(step_ms) if step_ms else None,
        train_loss=train_losses,
        other_cores=others.cores,
    )
    return record


def first_reach(evals: list[dict], target: float) -> dict | None:
    """The first evaluation point at or below ``target`` (step and training seconds)."""
    for e in evals:
        if e["val_loss"] <= target:
            return {"step": e["step"], "train_seconds": e["train_seconds"]}
    return None


# --------------------------------------------------------------------------- summary and targets
def best_of(runs: list[dict], family: str) -> dict | None:
    ok = [r for r in runs if r["family"] == family and r["final_val_loss"] is not None]
    return min(ok, key=lambda r: r["final_val_loss"]) if ok else None


def summarize(runs: list[dict], steps: int, lrs: tuple[float, ...], tiny: bool) -> tuple[dict, list[dict]]:
    caveat = " [tiny run: indicative only]" if tiny else ""
    best = {fam: best_of(runs, fam) for fam in ("adamw", "torch_muon", "hf_muon", "hf_muon_keller")}
    summary: dict = {
        fam: (
            None
            if r is None
            else {
                "name": r["name"],
                "lr": r["lr"],
                "final_val_loss": r["final_val_loss"],
                "train_seconds": r["train_seconds"],
            }
        )
        for fam, r in best.items()
    }
    for fam in ("adamw", "hf_muon"):
        r = best[fam]
        if r is not None and len(lrs) > 1 and r["lr"] in (min(lrs), max(lrs)):
            summary[fam]["lr_at_grid_edge"] = True
    targets: list[dict] = []
    adamw, hf, keller = best["adamw"], best["hf_muon"], best["hf_muon_keller"]

    line = f"best hf_muon reaches best AdamW's final val loss in ≤ {TARGET_STEP_FRACTION}× the steps"
    if adamw is None or hf is None:
        targets.append(
            {"target": line, "status": "NOT MEASURED", "measured": "no finished AdamW or hf_muon run"}
        )
    else:
        goal = adamw["final_val_loss"]
        for r in runs:
            r["reaches_adamw_best"] = first_reach(r["evals"], goal)
        hit = hf["reaches_adamw_best"]
        if hit is None:
            targets.append(
                {
                    "target": line,
                    "status": "NOT MET",
                    "measured": f"{hf['name']} never reached {goal:.4f} (its final {hf['final_val_loss']:.4f})"
                    + caveat,
                    "value": None,
                }
            )
        else:
            frac = hit["step"] / steps
            summary["hf_muon_steps_to_adamw_best"] = hit["step"]
            summary["hf_muon_fraction_to_adamw_best"] = frac
            summary["hf_muon_seconds_to_adamw_best"] = hit["train_seconds"]
            targets.append(
                {
                    "target": line,
                    "status": "MET" if frac <= TARGET_STEP_FRACTION else "NOT MET",
                    "measured": f"{hf['name']} reaches {goal:.4f} ({adamw['name']}'s final) at step {hit['step']} of "
                    f"{steps} = {frac:.2f}× ({hit['train_seconds']:.1f} s of training vs AdamW's "
                    f"{adamw['train_seconds']:.1f} s); evaluation every {steps_between(hf['evals'])} steps"
                    + caveat,
                    "value": frac,
                }
            )

    line = "Polar Express final val loss ≤ Keller's (hf_muon, same lr and steps)"
    pe = next(
        (r for r in runs if r["family"] == "hf_muon" and keller is not None and r["lr"] == keller["lr"]), None
    )
    if pe is None or keller is None or pe["final_val_loss"] is None:
        targets.append(
            {"target": line, "status": "NOT MEASURED", "measured": "a PE or Keller run did not finish"}
        )
    else:
        diff = pe["final_val_loss"] - keller["final_val_loss"]
        targets.append(
            {
                "target": line,
                "status": "MET" if diff <= 0 else "NOT MET",
                "measured": f"PE {pe['final_val_loss']:.4f} vs Keller {keller['final_val_loss']:.4f} at lr {pe['lr']:g} "
                f"(difference {diff:+.4f}; single seed)" + caveat,
                "value": diff,
            }
        )
    return summary, targets


def steps_between(evals: list[dict]) -> int | None:
    return evals[1]["step"] - evals[0]["step"] if len(evals) > 1 else None


# --------------------------------------------------------------------------- plots
FAMILY_STYLE = {
    "adamw": ("tab:blue", "AdamW"),
    "torch_muon": ("tab:gray", "torch.optim.Muon (defaults)"),
    "hf_muon": ("tab:red", "hf_muon (PE)"),
    "hf_muon_keller": ("tab:green", "hf_muon (Keller)"),
}


def write_plots(data: dict, folder: Path) -> dict[str, str] | str:
    """Val loss vs steps and vs training seconds; returns the paths, or the reason no plot was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"matplotlib not available ({e})"
    runs = [r for r in data["runs"] if len(r["evals"]) > 1]
    if not runs:
        return "no run has more than one evaluation point"
    best_names = {s["name"] for s in data["summary"].values() if isinstance(s, dict) and "name" in s}
    swept = {
        f for f in FAMILY_STYLE if sum(r["family"] == f for r in runs) > 1
    }  # "(best)" only among several
    steps = data["config"]["steps"]
    late = [
        e["val_loss"]
        for r in runs
        for e in r["evals"]
        if e["step"] >= steps / 4 and math.isfinite(e["val_loss"])
    ]
    low = min(e["val_loss"] for r in runs for e in r["evals"])
    top = max(late) if late else None
    goal = (data["summary"].get("adamw") or {}).get("final_val_loss")
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, xkey, xlabel, fname in (
        ("steps", "step", "optimizer steps", "convergence_steps.png"),
        ("time", "train_seconds", "training wall-clock (s, evaluation excluded)", "convergence_time.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 5))
        for r in runs:
            color, label = FAMILY_STYLE[r["family"]]
            is_best = r["name"] in best_names
            ax.plot(
                [e[xkey] for e in r["evals"]],
                [e["val_loss"] for e in r["evals"]],
                color=color,
                lw=2.2 if is_best else 1.0,
                alpha=1.0 if is_best else 0.45,
                marker="o" if is_best else None,
                ms=3,
                label=f"{label} lr {r['lr']:g}" + (" (best)" if is_best and r["family"] in swept else ""),
            )
        if goal is not None:
            ax.axhline(goal, color="tab:blue", ls=":", lw=1, label=f"best AdamW final ({goal:.3f})")
        if top is not None and top > low:
            ax.set_ylim(low - 0.05 * (top - low), top + 0.1 * (top - low))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{data['config']['model']}, TinyStories — val loss vs {key}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = folder / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out[key] = str(path)
    return out


# --------------------------------------------------------------------------- report
def fmt_loss(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def report(data: dict) -> str:
    """The markdown section for RESULTS.md (also printed)."""
    cfg, info = data["config"], data["data"]
    lines = [
        "## Convergence (benchmarks/bench_convergence.py)",
        "",
        common.run_line(data, busy="wall-clock numbers not comparable",
                        contended="other processes ran during some runs (marked CONTENDED)")
        + f". Whole benchmark {data['seconds']:.0f} s.",
        "",
        f"{cfg['model']} ({cfg['params']:,} params, fp32), trained from the same initial weights on the same "
        f"batches: TinyStories from the local mirror, GPT-2 tokens re-indexed to the {info['vocab_keep']:,} most "
        f"frequent training ids + one 'other' id (vocab {info['model_vocab']:,}; 'other' is "
        f"{100 * info['other_fraction_train']:.2f}% of training and {100 * info['other_fraction_val']:.2f}% of "
        f"validation tokens), blocks of {info['block']}; {info['train_blocks']:,} training blocks, "
        f"{info['val_blocks']} held-out validation blocks ({info['val_tokens']:,} tokens). Batch {cfg['batch']}, "
        f"{cfg['steps']} steps ({info['epochs']:.1f} passes), warmup {cfg['warmup_steps']} steps then cosine to "
        f"{MIN_LR_RATIO:g}× peak, clip {CLIP_NORM:g}, weight decay {WEIGHT_DECAY:g} (none on norms). Validation "
        f"loss every {cfg['eval_every']} steps; seconds = cumulative training time (forward, backward, clip, "
        f"optimizer step), evaluation excluded. hf_muon NS dtype: {cfg['hf_muon_ns_dtype']}. Raw numbers: "
        f"`benchmarks/results/{data['json_name']}`.",
        "",
    ]
    goal = (data["summary"].get("adamw") or {}).get("final_val_loss")
    rows = []
    for r in data["runs"]:
        hit = r.get("reaches_adamw_best")
        reach = "—" if hit is None else f"{hit['step']} ({hit['train_seconds']:.1f} s)"
        note = r["note"]
        if r["status"] != "ok":
            note = f"{r['status']}; " + note
        if (r.get("other_cores") or 0) > common.MAX_OTHER_CORES:
            note += f"; CONTENDED: other processes used {r['other_cores']:.1f} cores"
        rows.append(
            [
                r["name"],
                f"{r['lr']:g}",
                fmt_loss(r["final_val_loss"]),
                fmt_loss(r["min_val_loss"]),
                f"{r['train_seconds']:.1f}",
                common.fmt_ms(r["step_ms_median"]),
                reach,
                note,
            ]
        )
    lines += [
        common.markdown_table(
            [
                "run",
                "lr",
                "final val",
                "min val",
                "train s",
                "step ms",
                f"step (s) to ≤ {fmt_loss(goal)}",
                "note",
            ],
            rows,
            "lrrrrrrl",
        ),
        "",
        "Best per optimizer:",
        "",
    ]
    rows = []
    for fam, (_, label) in FAMILY_STYLE.items():
        s = data["summary"].get(fam)
        if s is None:
            rows.append([label, "—", "—", "—"])
            continue
        edge = " (lr at the edge of the grid)" if s.get("lr_at_grid_edge") else ""
        rows.append([label, f"{s['lr']:g}{edge}", fmt_loss(s["final_val_loss"]), f"{s['train_seconds']:.1f}"])
    lines += [common.markdown_table(["optimizer", "lr", "final val loss", "train s"], rows, "llrr"), ""]
    plots = data.get("plots")
    if isinstance(plots, dict) and not data["args"]["tiny"]:
        lines += [
            f"![val loss vs steps](results/{Path(plots['steps']).name}) "
            f"![val loss vs seconds](results/{Path(plots['time']).name})",
            "",
        ]
    lines += ["### Targets", ""]
    lines += [f"- {c['target']}: **{c['status']}** — {c['measured']}" for c in data["targets"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = common.standard_parser(__doc__, "convergence", plots="the PNGs",
                                tiny_help="hidden-32 2-layer model, 30 steps, 1 thread (smoke test, < 60 s); no RESULTS.md")
    ap.add_argument("--data", default=None, help="data mirror (default $HF_MUON_DATA, else ../shared/data)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default 400, tiny 30)")
    ap.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default 25, tiny 10)")
    ap.add_argument("--lrs", type=float, nargs="+", default=list(LRS),
                    help="lr grid for AdamW and hf_muon (default: %(default)s)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load, device = common.start(args)
    size = TINY if args.tiny else FULL
    steps = args.steps or size.steps
    eval_every = args.eval_every or size.eval_every
    lrs = tuple(sorted(args.lrs))
    started = time.time()

    data_dir = args.data or default_data_dir()
    t0 = time.time()
    data = prepare_data(size, data_dir, steps)
    print(
        f"data: {data.info['train_blocks']} train / {data.info['val_blocks']} val blocks of {size.block}, "
        f"vocab {data.vocab} ({100 * data.info['other_fraction_train']:.2f}% 'other'), "
        f"{data.info['epochs']:.2f} passes; {time.time() - t0:.1f} s",
        flush=True,
    )
    base = build_model(size, data.vocab)
    n_params = sum(p.numel() for p in base.parameters())
    model_name = f"Llama h{size.hidden} L{size.layers} i{size.intermediate}"
    ns_dtype = str(resolve_dtype("auto", device, torch.float32)).replace("torch.", "")

    specs = [RunSpec(f"AdamW lr {lr:g}", "adamw", lr, build_adamw, "torch.optim.AdamW") for lr in lrs]
    specs.append(
        RunSpec(
            "torch.optim.Muon (defaults) + AdamW",
            "torch_muon",
            TORCH_MUON_LR,
            build_torch_muon,
            "torch.optim.Muon defaults (adjust_lr_fn=None) on hf_muon's Muon set; torch AdamW lr 1e-3 on the rest",
        )
    )
    specs += [
        RunSpec(
            f"hf_muon lr {lr:g}",
            "hf_muon",
            lr,
            hf_muon_builder("polar_express"),
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
        r = train_run(spec, base, data, size, steps, eval_every, device)
        runs.append(r)
        print(
            f"  {spec.name:<40} final val {fmt_loss(r['final_val_loss'])}  "
            f"train {r['train_seconds']:6.1f} s  step {common.fmt_ms(r['step_ms_median'])} ms  "
            f"{r['status']}",
            flush=True,
        )

    for spec in specs:
        run(spec)
    best_hf = best_of(runs, "hf_muon")
    keller_lr = best_hf["lr"] if best_hf is not None else lrs[0]
    run(
        RunSpec(
            f"hf_muon keller lr {keller_lr:g}",
            "hf_muon_keller",
            keller_lr,
            hf_muon_builder("keller"),
            f"coefficients=keller at hf_muon's best lr, NS {ns_dtype}",
        )
    )

    summary, targets = summarize(runs, steps, lrs, args.tiny)
    result: dict = {
        "benchmark": "convergence",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": common.machine_info(args.device),
        "versions": common.package_versions(),
        "seeds": {"model": MODEL_SEED, "data_order": DATA_SEED},
        "load": load,
        "config": {
            **asdict(size),
            "model": model_name,
            "params": n_params,
            "steps": steps,
            "eval_every": eval_every,
            "warmup_steps": max(1, round(WARMUP_FRACTION * steps)),
            "schedule": f"linear warmup {WARMUP_FRACTION:g} of steps, cosine to {MIN_LR_RATIO:g}× peak",
            "clip_norm": CLIP_NORM,
            "weight_decay": WEIGHT_DECAY,
            "lrs": list(lrs),
            "hf_muon_ns_dtype": ns_dtype,
            "model_config": base.config.to_diff_dict(),
        },
        "data": data.info,
        "runs": runs,
        "summary": summary,
        "targets": targets,
    }
    result["contended"] = any((r.get("other_cores") or 0) > common.MAX_OTHER_CORES for r in runs)
    result["load_at_end"] = common.load_average()
    result["seconds"] = time.time() - started

    result["plots"] = common.draw_plots(args, lambda folder: write_plots(result, folder))
    common.publish(args, result, "convergence", "convergence", report)
    if isinstance(result["plots"], dict):
        print("plots: " + ", ".join(result["plots"].values()))
    else:
        print(f"plots: {result['plots']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
