"""Shared machinery of the research recipes (``recipes/spectral_laws``, ``recipes/spectral_family``,
``recipes/lr_transfer``): config loading, data, tiny models, a training loop, resumable run storage,
FLOP counting and the small statistics the reports need.

* :func:`load_config`: a YAML file merged over a recipe's defaults; unknown keys are errors that name
  the key path (``train.stpes``) and list the valid ones.
* :func:`prepare_data`: real text from the local mirror (:mod:`hf_muon.lab.data`), cut into blocks, with
  the GPT-2 ids *re-indexed* to the ``vocab_size − 1`` most frequent ids of the training split plus
  one "other" id. The text and token sequence are real; the output layer stays small enough for CPU.
* :func:`build_llama` / :func:`build_gpt2`: models from configs (never downloaded), dropout off.
* :func:`train`: a plain loop (random shuffled blocks, warmup → constant → linear decay schedule,
  optional grad clipping, periodic validation, a ``tqdm`` bar, a per-step hook, divergence detection).
* :class:`RunStore`: one JSON per training run under ``<out>/runs``; a finished run whose stored spec
  equals the requested one is loaded instead of re-run, so an interrupted recipe resumes where it
  stopped (granularity: one training run).
* :func:`start_recipe` / :class:`Recipe`: the common ``main`` of a recipe (arguments, config, data, run
  store, the reproducing command) and its ending (``summary.json`` + ``report.md``).
* :func:`ns_flops`: Newton-Schulz FLOPs ``steps·(4m²n + 2m³)`` of an ``m×n`` matrix (``m ≤ n``): per
  step ``A = XXᵀ`` (2m²n), ``A²`` (2m³) and ``B·X`` (2m²n).
* :func:`fit_power_law`: least squares of ``log y = c + α log x`` (slope α, R², standard error).
* :func:`lr_grid` / :func:`best_lr`: log-spaced grids and the best point with a parabolic refinement
  in log-lr and an "interior" flag (the optimum is not at a grid edge).

Progress bars honour ``TQDM_DISABLE=1``. Nothing here downloads anything.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .models import build_gpt2, build_llama, param_counts, quiet_transformers

REPO_DIR = Path(__file__).resolve().parents[2]
# Rates behind the recipes' time estimates, measured with one torch thread on this project's AVX-512 CPU
# (shared, under load): fp32 forward+backward of these models 80-97 GFLOP/s (also used for the fp32
# Gram work of p = 1/2, 1/4), bf16 Newton-Schulz 300-335 GFLOP/s. Two threads on *shared* cores were
# pathological (OpenMP waits on a descheduled thread: ~30x slower steps), so the recipes use one thread.
DEFAULT_THROUGHPUT_GFLOPS = 80.0
DEFAULT_NS_THROUGHPUT_GFLOPS = 300.0

DATA_DEFAULTS: dict[str, Any] = {
    "data_dir": None,  # null: $HF_MUON_DATA, else ../shared/data beside the repository
    "corpus": "tinystories",
    "block_size": 128,
    "max_tokens": None,
    "vocab_size": 4096,  # re-indexed vocabulary (most frequent ids + one "other" id)
    "val_fraction": 0.05,
    "max_val_blocks": 32,
}

TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 100,
    "batch_size": 8,
    "warmup_steps": 10,
    "decay_ratio": 0.1,  # linear decay to min_lr_ratio over the last fraction of steps
    "min_lr_ratio": 0.0,
    "grad_clip": None,
    "eval_every": 50,
    "eval_batch_size": 16,
    "seed": 0,
}


# ------------------------------------------------------------------------------------------ config
def merge_config(defaults: dict, data: dict | None, where: str = "") -> dict:
    """``data`` merged over a deep copy of ``defaults``; unknown keys raise ``ValueError`` naming the path.

    A default of ``None`` or a non-dict value accepts anything; a dict default recurses, except that a
    default that is an *empty* dict accepts any mapping (free-form tables such as variant lists).
    """
    out = copy.deepcopy(defaults)
    if data is None:
        return out
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in defaults:
            raise ValueError(f"unknown config key {path!r}; valid keys here: {', '.join(map(str, defaults))}")
        if isinstance(defaults[key], dict) and defaults[key]:
            out[key] = merge_config(defaults[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike, defaults: dict) -> dict:
    """Read a recipe YAML and merge it over ``defaults`` (see :func:`merge_config`)."""
    import yaml

    text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    return merge_config(defaults, data, "")


# -------------------------------------------------------------------------------------------- data
def resolve_data_dir(value: str | None = None) -> Path:
    """The data mirror: ``value``, else ``$HF_MUON_DATA``, else ``../shared/data`` beside the repository."""
    for cand, origin in ((value, "data.data_dir"), (os.environ.get("HF_MUON_DATA"), "$HF_MUON_DATA")):
        if cand:
            p = Path(cand).expanduser()
            if not p.is_dir():
                raise FileNotFoundError(f"data dir {p} (from {origin}) does not exist")
            return p
    fallback = REPO_DIR.parent / "shared" / "data"
    if fallback.is_dir():
        return fallback
    raise FileNotFoundError(f"no data dir: set data.data_dir or $HF_MUON_DATA to the shared data mirror ({fallback} is absent)")


@dataclass
class LMData:
    """Fixed-length token blocks (``(N, T)`` int64) with a re-indexed vocabulary."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    info: dict = field(default_factory=dict)


def compact_vocab(train_ids: torch.Tensor, vocab_size: int, full_vocab: int) -> torch.Tensor:
    """A map full id → new id: the ``vocab_size − 1`` most frequent ids of ``train_ids`` keep a slot
    (most frequent first), every other id maps to ``vocab_size − 1`` ("other")."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    counts = torch.bincount(train_ids.flatten(), minlength=full_vocab)
    keep = counts.argsort(descending=True, stable=True)[: vocab_size - 1]
    remap = torch.full((full_vocab,), vocab_size - 1, dtype=torch.long)
    remap[keep] = torch.arange(len(keep))
    return remap


def prepare_data(cfg: dict) -> LMData:
    """Blocks of real mirror text (``cfg`` = the ``data`` section; see ``DATA_DEFAULTS``)."""
    from .data import lm_blocks, load_text, load_tokenizer

    cfg = merge_config(DATA_DEFAULTS, cfg, "data")
    root = resolve_data_dir(cfg["data_dir"])
    tok = load_tokenizer(root)
    ds = lm_blocks(tok, load_text(root, cfg["corpus"]), block_size=int(cfg["block_size"]), max_tokens=cfg["max_tokens"])
    ids = torch.tensor(ds["input_ids"], dtype=torch.long)
    n_val = max(1, round(len(ids) * float(cfg["val_fraction"])))
    if cfg["max_val_blocks"]:
        n_val = min(n_val, int(cfg["max_val_blocks"]))
    if len(ids) - n_val < 1:
        raise ValueError(f"only {len(ids)} blocks: not enough for a train/val split")
    train_raw, val_raw = ids[: len(ids) - n_val], ids[len(ids) - n_val :]  # contiguous tail, no overlap
    remap = compact_vocab(train_raw, int(cfg["vocab_size"]), len(tok))
    train, val = remap[train_raw], remap[val_raw]
    other = int(cfg["vocab_size"]) - 1
    info = {
        "corpus": cfg["corpus"],
        "data_dir": str(root),
        "block_size": int(cfg["block_size"]),
        "train_blocks": len(train),
        "val_blocks": len(val),
        "train_tokens": int(train.numel()),
        "vocab_size": int(cfg["vocab_size"]),
        "other_token_share_train": float((train == other).double().mean()),
        "other_token_share_val": float((val == other).double().mean()),
    }
    return LMData(train, val, int(cfg["vocab_size"]), info)


# ------------------------------------------------------------------------------------------ models
def train_flops(model, tokens: int, block_size: int) -> float:
    """≈ training FLOPs: ``6·(non-embedding + output-head matmul params)·tokens`` plus attention scores
    ``12·layers·T·width`` per token (forward + backward)."""
    counts = param_counts(model)
    cfg = model.config
    vocab = cfg.vocab_size
    width = getattr(cfg, "hidden_size", None) or cfg.n_embd
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    active = counts["non_embedding"] + vocab * width
    return 6.0 * active * tokens + 12.0 * layers * block_size * width * tokens


def estimate_minutes(flops: float, gflops: float = DEFAULT_THROUGHPUT_GFLOPS) -> float:
    return flops / (gflops * 1e9) / 60.0


def time_estimate(train: float, ns: float, cfg: dict, **extra) -> dict:
    """Minutes for ``train`` FLOPs at ``cfg["throughput_gflops"]`` plus ``ns`` FLOPs (Newton-Schulz) at
    ``cfg["ns_throughput_gflops"]``."""
    thr, nthr = float(cfg["throughput_gflops"]), float(cfg["ns_throughput_gflops"])
    minutes = estimate_minutes(train, thr) + estimate_minutes(ns, nthr)
    return {"flops": train + ns, "train_flops": train, "ns_flops": ns, "throughput_gflops": thr,
            "ns_throughput_gflops": nthr, "minutes": minutes, **extra}


def describe_estimate(est: dict) -> str:
    """One sentence for a report: FLOPs, rates and minutes."""
    return (f"{est['flops'] / 1e9:,.0f} GFLOP ({est['train_flops'] / 1e9:,.0f} model/fp32 at {est['throughput_gflops']:g} "
            f"GFLOP/s + {est['ns_flops'] / 1e9:,.0f} Newton-Schulz at {est['ns_throughput_gflops']:g} GFLOP/s, the rates "
            f"measured here with one thread) ≈ **{est['minutes']:.0f} min**")


# ------------------------------------------------------------------------------------------- optim
OPTIM_DEFAULTS: dict[str, Any] = {
    "lr": 0.02,
    "adamw_lr": 3e-3,
    "weight_decay": 0.0,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    "coefficients": "polar_express",
    "scale_mode": "keller",
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "spectral_power": 0.0,
    "update_base": "momentum",
    "ns_dtype": "auto",
    "auto_every": 100,
}


AUTO_KEYS = ("auto_quantile", "auto_target", "auto_min", "auto_max")


def build_optimizer(model, cfg: dict):
    """``hf_muon.Muon`` over ``hf_muon.param_groups(model, ns_steps=…)`` (a schedule is resolved per
    parameter); AdamW groups (embeddings, head, norms, biases) get ``adamw_lr``."""
    import warnings

    from hf_muon import Muon, param_groups

    # the auto rule's settings are optional keys (absent: the optimizer's defaults), so configs that never use
    # "auto" keep their specs
    auto = {k: cfg[k] for k in AUTO_KEYS if k in cfg}
    cfg = merge_config(OPTIM_DEFAULTS, {k: v for k, v in cfg.items() if k not in AUTO_KEYS}, "optimizer")
    steps = cfg["ns_steps"]
    extra = {"auto_every": int(cfg["auto_every"]), **auto} if steps == "auto" else {}
    groups = param_groups(model, ns_steps=steps, **extra)
    with warnings.catch_warnings():  # sweeps deliberately visit lrs outside a mode's usual range
        warnings.filterwarnings("ignore", message=r"Muon lr=")
        return Muon(groups, lr=float(cfg["lr"]), adamw_lr=float(cfg["adamw_lr"]),
                    weight_decay=float(cfg["weight_decay"]), momentum=float(cfg["momentum"]),
                    nesterov=bool(cfg["nesterov"]), coefficients=cfg["coefficients"], scale_mode=cfg["scale_mode"],
                    betas=tuple(cfg["betas"]), eps=float(cfg["eps"]), spectral_power=float(cfg["spectral_power"]),
                    update_base=cfg["update_base"], ns_dtype=cfg["ns_dtype"],
                    ns_steps=5 if isinstance(steps, (str, dict)) and steps != "auto" else steps)


def muon_params(opt) -> list[tuple[str, torch.Tensor, dict]]:
    """``(name, param, group)`` of every Muon-routed parameter."""
    out = []
    for g in opt.param_groups:
        if not g.get("use_muon"):
            continue
        names = g.get("param_names") or [f"param{i}" for i in range(len(g["params"]))]
        out += [(n, p, g) for n, p in zip(names, g["params"])]
    return out


# ------------------------------------------------------------------------------------------- FLOPs
def ns_flops(shape: Sequence[int], steps: int) -> int:
    """Newton-Schulz FLOPs of one matrix: ``steps·(4m²n + 2m³)``, ``m = min``, ``n = max`` of the last two
    dims (times the batch of leading dims)."""
    *lead, a, b = (int(s) for s in shape)
    m, n = min(a, b), max(a, b)
    return int(steps) * (4 * m * m * n + 2 * m**3) * math.prod(lead)


def current_ns_steps(opt, p: torch.Tensor, group: dict) -> int:
    """Steps used for ``p`` at the last optimizer step (``"auto"``: the per-parameter state)."""
    if group["ns_steps"] == "auto":
        st = opt.state.get(p, {})
        return int(st["ns_steps"]) if "ns_steps" in st else int(group["auto_max"])
    return int(group["ns_steps"])


def optimizer_ns_flops(opt) -> int:
    """NS FLOPs of one optimizer step with the step counts currently in use."""
    return sum(ns_flops(p.shape, current_ns_steps(opt, p, g)) for _, p, g in muon_params(opt))


# ------------------------------------------------------------------------------------------ train
def lr_factor(step: int, steps: int, warmup: int, decay_ratio: float, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, constant, then linear decay to ``min_ratio`` over the last
    ``decay_ratio·steps`` steps (warmup–stable–decay). ``step`` counts from 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_steps = int(round(decay_ratio * steps))
    start = steps - decay_steps
    if decay_steps > 0 and step >= start:
        frac = (step - start + 1) / decay_steps
        return 1.0 - (1.0 - min_ratio) * frac
    return 1.0


@torch.no_grad()
def evaluate(model, blocks: torch.Tensor, batch_size: int = 16) -> float:
    """Mean next-token loss over ``blocks`` (every block has the same length, so a block-weighted mean)."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids = blocks[i : i + batch_size]
        total += float(model(input_ids=ids, labels=ids).loss) * len(ids)
        n += len(ids)
    model.train(was_training)
    return total / max(n, 1)


def progress(iterable, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, mininterval=1.0, **kw)


def train(model, optimizer, data: LMData, cfg: dict, *, on_step: Callable | None = None, desc: str = "",
          diverge_loss: float | None = None) -> dict:
    """Train ``model`` for ``cfg["steps"]`` steps (``cfg`` = the ``train`` section, see ``TRAIN_DEFAULTS``).

    ``on_step(step, model, optimizer, loss)`` runs after every optimizer step (``step`` counts from 1).
    The run stops as diverged when the training loss is non-finite or above ``diverge_loss`` (default
    ``3·ln(vocab)``), or a non-finite gradient reaches the optimizer; ``final_val_loss`` is then ``None``.
    """
    cfg = merge_config(TRAIN_DEFAULTS, cfg, "train")
    steps, bs = int(cfg["steps"]), int(cfg["batch_size"])
    diverge_loss = 3.0 * math.log(data.vocab_size) if diverge_loss is None else diverge_loss
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps, int(cfg["warmup_steps"]), float(cfg["decay_ratio"]),
                                       float(cfg["min_lr_ratio"])))
    gen = torch.Generator().manual_seed(int(cfg["seed"]) + 1)
    order = torch.randperm(len(data.train), generator=gen)
    pos = 0
    model.train()
    train_curve, val_curve, window = [], [], []
    diverged, reason = False, None
    t0 = time.perf_counter()
    bar = progress(range(1, steps + 1), desc=desc or "train", leave=False)
    step = 0
    for step in bar:
        if pos + bs > len(order):
            order, pos = torch.randperm(len(data.train), generator=gen), 0
        ids = data.train[order[pos : pos + bs]]
        pos += bs
        loss = model(input_ids=ids, labels=ids).loss
        lv = loss.detach().item()
        if not math.isfinite(lv) or lv > diverge_loss:
            diverged, reason = True, f"training loss {lv:.4g} at step {step}"
            break
        loss.backward()
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
        try:
            optimizer.step()
        except FloatingPointError as e:
            diverged, reason = True, f"non-finite gradient at step {step}: {e}"
            break
        optimizer.zero_grad(set_to_none=True)
        sched.step()
        window.append(lv)
        if on_step is not None:
            on_step(step, model, optimizer, lv)
        if step % 10 == 0 or step == steps:
            train_curve.append([step, sum(window) / len(window)])
            window = []
            bar.set_postfix(loss=f"{train_curve[-1][1]:.3f}", refresh=False)
        if cfg["eval_every"] and step % int(cfg["eval_every"]) == 0 and step != steps:
            val_curve.append([step, evaluate(model, data.val, int(cfg["eval_batch_size"]))])
    bar.close()
    final = None
    if not diverged:
        final = evaluate(model, data.val, int(cfg["eval_batch_size"]))
        if not math.isfinite(final):
            diverged, reason, final = True, "non-finite validation loss", None
        else:
            val_curve.append([steps, final])
    return {
        "final_val_loss": final,
        "diverged": diverged,
        "diverged_reason": reason,
        "steps_done": step if not diverged else step - 1,
        "tokens": (step if not diverged else step - 1) * bs * data.train.shape[1],
        "train_curve": train_curve,
        "val_curve": val_curve,
        "wall_s": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------------------- run store
def _jsonable(x):
    """Specs compare as their JSON form (tuples → lists, floats as written)."""
    return json.loads(json.dumps(x, default=str))


class RunStore:
    """One JSON per training run under ``<root>/runs``; finished runs with an equal spec are skipped."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.dir = self.root / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.executed: list[str] = []
        self.skipped: list[str] = []

    def path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    def load(self, run_id: str, spec: dict | None = None) -> dict | None:
        """The stored record when the run finished (and its spec equals ``spec`` when given)."""
        p = self.path(run_id)
        if not p.is_file():
            return None
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            return None
        if rec.get("status") != "done":
            return None
        if spec is not None and rec.get("spec") != _jsonable(spec):
            return None
        return rec

    def run(self, run_id: str, spec: dict, fn: Callable[[], dict]) -> dict:
        """``fn()``'s result for this run, from disk when already finished with the same spec."""
        rec = self.load(run_id, spec)
        if rec is not None:
            self.skipped.append(run_id)
            return rec["result"]
        started = time.time()
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        result = fn()
        rec = {"run_id": run_id, "status": "done", "spec": _jsonable(spec), "result": _jsonable(result),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
               "wall_s": time.time() - started, "load_average_at_start": load,
               "torch_threads": torch.get_num_threads()}
        write_json(self.path(run_id), rec)
        self.executed.append(run_id)
        return rec["result"]

    def records(self) -> list[dict]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except json.JSONDecodeError:
                continue
        return out


# ------------------------------------------------------------------------------------------ stats
def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares fit of ``log y = c + α·log x`` (natural logs); returns α, c, R², the standard
    error of α and the number of points. Needs ≥ 2 positive points."""
    import numpy as np

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = (xs > 0) & (ys > 0) & np.isfinite(xs) & np.isfinite(ys)
    lx, ly = np.log(xs[ok]), np.log(ys[ok])
    n = len(lx)
    if n < 2:
        raise ValueError(f"a power-law fit needs at least 2 positive points, got {n}")
    A = np.stack([np.ones(n), lx], axis=1)
    (c, alpha), *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - (c + alpha * lx)
    ss_res = float((resid**2).sum())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    sxx = float(((lx - lx.mean()) ** 2).sum())
    stderr = math.sqrt(ss_res / (n - 2) / sxx) if n > 2 and sxx > 0 else float("nan")
    return {"alpha": float(alpha), "c": float(c), "r2": r2, "stderr": stderr, "n": n}


def lr_grid(center: float, factor: float, points: int) -> list[float]:
    """``points`` log-spaced lrs with ratio ``factor`` between neighbours, centred (geometrically) on ``center``."""
    if points < 1 or factor <= 1 or center <= 0:
        raise ValueError("lr_grid needs points >= 1, factor > 1, center > 0")
    half = (points - 1) / 2
    return [float(f"{center * factor ** (i - half):.4g}") for i in range(points)]


def best_lr(lrs: Sequence[float], losses: Sequence[float | None]) -> dict:
    """Best grid point (``None`` losses count as diverged), whether it is interior, and a parabolic
    refinement of the optimum in log-lr through the best point and its two neighbours (interior only)."""
    pts = sorted((float(lr), float("inf") if v is None else float(v)) for lr, v in zip(lrs, losses))
    vals = [v for _, v in pts]
    if not pts or all(math.isinf(v) for v in vals):
        return {"best_lr": None, "best_loss": None, "interior": False, "refined_lr": None, "diverged_all": True}
    i = min(range(len(pts)), key=lambda k: vals[k])
    interior = 0 < i < len(pts) - 1
    refined = pts[i][0]
    if interior and all(math.isfinite(vals[k]) for k in (i - 1, i, i + 1)):
        x = [math.log(pts[k][0]) for k in (i - 1, i, i + 1)]
        y = [vals[k] for k in (i - 1, i, i + 1)]
        den = (x[0] - x[1]) * (x[0] - x[2]) * (x[1] - x[2])
        a = (x[2] * (y[1] - y[0]) + x[1] * (y[0] - y[2]) + x[0] * (y[2] - y[1])) / den
        b = (x[2] ** 2 * (y[0] - y[1]) + x[1] ** 2 * (y[2] - y[0]) + x[0] ** 2 * (y[1] - y[2])) / den
        if a > 0:
            refined = math.exp(min(max(-b / (2 * a), x[0]), x[2]))
    return {"best_lr": pts[i][0], "best_loss": vals[i], "interior": interior, "refined_lr": refined,
            "diverged_all": False}


# ----------------------------------------------------------------------------------------- output
def write_json(path: str | os.PathLike, data: Any) -> None:
    """Indented JSON, written atomically (``path.tmp`` then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one ``l``/``r``/``c`` per column (default left)."""
    align = align or "l" * len(headers)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |")
    return "\n".join(lines)


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def command_line(script: str | os.PathLike, argv: Sequence[str]) -> str:
    """The command that reproduces this run, with repository-relative paths where possible."""
    def rel(s: str) -> str:
        try:
            return str(Path(s).resolve().relative_to(REPO_DIR))
        except ValueError:
            return s

    parts = ["python", rel(str(script))] + [rel(a) if Path(a).exists() else a for a in argv]
    return " ".join(parts)


def plt():
    """matplotlib.pyplot with the Agg backend, or ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    return pyplot


def environment() -> dict:
    """Versions, threads and load of the machine that ran a recipe (for summaries and reports)."""
    import platform

    try:
        import transformers

        tf_version = transformers.__version__
    except Exception:  # pragma: no cover
        tf_version = None
    return {"torch": torch.__version__, "transformers": tf_version, "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def describe_environment(env: dict) -> str:
    load = f", 1-min load {env['load_average'][0]:.1f} at the end" if env.get("load_average") else ""
    return (f"torch {env['torch']}, transformers {env['transformers']}, {env['torch_threads']} torch thread(s) on "
            f"{env['cpu_count']} cores{load}")


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is given (1 avoids OpenMP spin-waits for tiny models on busy cores)."""
    if n:
        torch.set_num_threads(int(n))


def parse_args(argv: Sequence[str] | None, description: str, default_out: Path):
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("config", help="recipe YAML (config.yaml: full CPU scale; tiny.yaml: tests)")
    ap.add_argument("--out", default=None, help=f"output folder (default: {default_out})")
    args = ap.parse_args(argv)
    args.out = Path(args.out) if args.out else default_out
    return args


def report_text(lines: list[str], figs: Sequence[str]) -> str:
    """A report's markdown: ``lines``, then a Plots section showing ``figs`` (PNG names beside report.md)."""
    if figs:
        lines = lines + ["## Plots\n", *(f"![{f}]({f})" for f in figs), ""]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- one recipe run
@dataclass
class Recipe:
    """What every recipe's ``main`` sets up: its config, output folder, run store, data and command."""

    name: str
    cfg: dict
    out: Path
    store: RunStore
    data: LMData
    command: str
    results: dict = field(default_factory=dict)

    def run(self, run_id: str, spec: dict, fn: Callable[[], dict]) -> dict:
        """One resumable training run; its result (with ``wall_s``) is kept in ``self.results``."""
        res = self.store.run(run_id, spec, fn)
        rec = self.store.load(run_id)
        res["wall_s"] = rec.get("wall_s", 0) if rec else 0
        self.results[run_id] = res
        return res

    def announce(self, runs: int, est: dict) -> None:
        """Print the plan: how many training runs, their FLOPs and the estimated minutes."""
        print(f"{self.name}: {runs} training runs, ≈{est['flops'] / 1e12:.2f} TFLOP, estimated "
              f"{est['minutes']:.1f} min", flush=True)

    def finish(self, summary: dict, report: str) -> Path:
        """Write ``summary.json`` (with config, command, environment, data and run bookkeeping) and
        ``report.md``; print where they are."""
        full = {"config": self.cfg, "command": self.command, "environment": environment(),
                "data": self.data.info, **summary, "executed": self.store.executed, "skipped": self.store.skipped}
        write_json(self.out / "summary.json", full)
        (self.out / "report.md").write_text(report)
        print(f"ran {len(self.store.executed)} run(s), skipped {len(self.store.skipped)} finished; "
              f"report: {self.out / 'report.md'}")
        return self.out


def start_recipe(script: str | os.PathLike, doc: str, defaults: dict, argv: Sequence[str] | None) -> Recipe:
    """Parse ``CONFIG [--out DIR]``, load the config over ``defaults``, quiet transformers, set the thread
    count, open the run store and prepare the data (default output: ``results/`` beside ``script``)."""
    import sys

    script = Path(script).resolve()
    args = parse_args(argv, doc.splitlines()[0], script.parent / "results")
    cfg = load_config(args.config, defaults)
    quiet_transformers()
    set_threads(cfg.get("threads"))
    args.out.mkdir(parents=True, exist_ok=True)
    store = RunStore(args.out)
    data = prepare_data(cfg["data"])
    command = command_line(script, list(argv if argv is not None else sys.argv[1:]))
    return Recipe(cfg.get("name", script.parent.name), cfg, args.out, store, data, command)


__all__ = [
    "DATA_DEFAULTS",
    "OPTIM_DEFAULTS",
    "Recipe",
    "TRAIN_DEFAULTS",
    "LMData",
    "RunStore",
    "best_lr",
    "build_gpt2",
    "build_llama",
    "build_optimizer",
    "command_line",
    "compact_vocab",
    "describe_environment",
    "describe_estimate",
    "environment",
    "estimate_minutes",
    "evaluate",
    "fit_power_law",
    "fmt",
    "load_config",
    "lr_factor",
    "lr_grid",
    "markdown_table",
    "merge_config",
    "muon_params",
    "ns_flops",
    "optimizer_ns_flops",
    "param_counts",
    "progress",
    "report_text",
    "prepare_data",
    "set_threads",
    "start_recipe",
    "train",
    "time_estimate",
    "train_flops",
    "write_json",
]
