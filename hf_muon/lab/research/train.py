"""The lab's one training loop, used by the recipes, the benchmarks (``benchmarks/training.py``) and the tests.

* :func:`fit`: steps a model through given batches (forward, backward, optional clipping, optimizer step,
  lr schedule), evaluates every ``eval_every`` steps and at the end, shows a ``tqdm`` bar (honours
  ``TQDM_DISABLE=1``) and records every step's loss and training wall time in a :class:`History`.
* :func:`lr_factor` (warmup–stable–decay, the recipes') and :func:`cosine_factor` (warmup then cosine, the
  benchmarks'): the lr multiplier before each step.
* :func:`train`: a recipe's run: :func:`fit` over :func:`~hf_muon.lab.research.data.batch_order` batches with
  the ``train`` section's schedule, divergence detection and the recipes' result dict.
* :func:`evaluate`: the lab's validation loss (its definition is in the function's docstring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .config import TRAIN_DEFAULTS, merge_config
from .data import LMData, batch_order


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


def cosine_factor(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps (at least one), then cosine from 1 to ``min_ratio`` at ``steps``.
    ``step`` counts from 0."""
    warmup = max(1, warmup)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model, blocks: torch.Tensor, batch_size: int = 16) -> float:
    """The lab's validation loss: mean next-token negative log-likelihood per scored token (nats/token).

    One definition for the whole lab: every block is scored on its own, its first token (no context) is
    not scored, and the loss is the sum of ``-log p(x_t | x_<t)`` over scored tokens divided by their number.
    :func:`hf_muon.lab.evaluation.perplexity.evaluate_perplexity` (``loss``), the demo's and the study's
    ``Trainer`` ``eval_loss`` report the same quantity. Here the blocks are ``(N, T)`` (all of one length, no
    padding), so each holds ``T − 1`` scored tokens and the token-weighted mean equals the block-weighted mean
    of the model's per-block loss computed below.
    """
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


@dataclass
class History:
    """What :func:`fit` recorded, filled as it goes (a caller that catches an error keeps what came before)."""

    losses: list[float] = field(default_factory=list)  # training loss of every completed step
    step_seconds: list[float] = field(default_factory=list)  # forward → zero_grad of each completed step
    evals: list[dict] = field(default_factory=list)  # {"step", "train_seconds", "val_loss"}
    stopped: str | None = None  # why the run stopped early (None: it ran every step)

    def add_eval(self, step: int, model, val: torch.Tensor, batch_size: int) -> None:
        self.evals.append(
            {
                "step": step,
                "train_seconds": sum(self.step_seconds),
                "val_loss": evaluate(model, val, batch_size),
            }
        )


def _step(model, optimizer, schedulers, ids, clip, params, stop, sync) -> tuple[float, float, str | None]:
    """One training step: (loss, seconds, stop reason). A ``stop`` verdict on the loss skips backward and step."""
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    value = float(loss.detach())  # a host sync on CUDA
    reason = stop(value) if stop is not None else None
    if reason is not None:
        return value, 0.0, reason
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, float(clip))
    optimizer.step()
    for s in schedulers:
        s.step()
    optimizer.zero_grad()
    if sync is not None:
        sync()
    return value, time.perf_counter() - t0, None


def fit(
    model,
    optimizer,
    train: torch.Tensor,
    order: torch.Tensor,
    val: torch.Tensor,
    *,
    factor: Callable[[int], float],
    scheduled: Sequence[torch.optim.Optimizer] | None = None,
    clip: float | None = None,
    eval_every: int | None = None,
    eval_batch: int = 16,
    eval_at_start: bool = False,
    stop: Callable[[float], str | None] | None = None,
    on_step: Callable | None = None,
    desc: str = "train",
    history: History | None = None,
) -> History:
    """Train ``model`` on the batches ``train[order[0]], train[order[1]], …`` (``len(order)`` steps).

    ``optimizer``: anything with ``step()`` and ``zero_grad()``; each optimizer of ``scheduled`` (default
    ``[optimizer]``) gets a ``LambdaLR(factor)`` stepped after every optimizer step. Validation loss
    (:func:`evaluate` on ``val``) is recorded at step 0 if ``eval_at_start``, every ``eval_every`` steps and
    after the last. ``stop(loss)`` may end the run before a step is applied (its reason goes to
    ``History.stopped``); ``on_step(step, model, optimizer, loss)`` runs after every step (``step`` from 1).
    Step times cover forward to ``zero_grad`` (CUDA synchronised), not data indexing or evaluation.
    """
    history = History() if history is None else history
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in (scheduled or [optimizer])]
    params = [p for p in model.parameters() if p.requires_grad]
    sync = torch.cuda.synchronize if train.device.type == "cuda" else None
    steps = len(order)
    model.train()
    if eval_at_start:
        history.add_eval(0, model, val, eval_batch)
    bar = progress(range(1, steps + 1), desc=desc, leave=False)
    for step in bar:
        value, seconds, reason = _step(model, optimizer, schedulers, train[order[step - 1]], clip, params, stop, sync)
        if reason is not None:
            history.stopped = f"{reason} at step {step}"
            break
        history.losses.append(value)
        history.step_seconds.append(seconds)
        if on_step is not None:
            on_step(step, model, optimizer, value)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(history.losses[-10:]) / 10:.3f}", refresh=False)
        if (eval_every and step % eval_every == 0) or step == steps:
            history.add_eval(step, model, val, eval_batch)
    bar.close()
    return history


def curve(losses: list[float], steps: int, every: int = 10) -> list[list]:
    """``[step, mean training loss since the previous point]`` every ``every`` steps and at ``steps``."""
    ends = [s for s in range(1, len(losses) + 1) if s % every == 0 or s == steps]
    return [[end, sum(losses[start:end]) / (end - start)] for start, end in zip([0, *ends], ends)]


def train(
    model,
    optimizer,
    data: LMData,
    cfg: dict,
    *,
    on_step: Callable | None = None,
    desc: str = "",
    diverge_loss: float | None = None,
) -> dict:
    """Train ``model`` for ``cfg["steps"]`` steps (``cfg`` = the ``train`` section, see ``TRAIN_DEFAULTS``).

    Batches: :func:`batch_order` with ``seed + 1``, whole batches per pass; schedule: :func:`lr_factor`.
    ``on_step(step, model, optimizer, loss)`` runs after every optimizer step (``step`` counts from 1).
    The run stops as diverged when the training loss is non-finite or above ``diverge_loss`` (default
    ``3·ln(vocab)``), or a non-finite gradient reaches the optimizer; ``final_val_loss`` is then ``None``.
    """
    cfg = merge_config(TRAIN_DEFAULTS, cfg, "train")
    steps, bs = int(cfg["steps"]), int(cfg["batch_size"])
    limit = 3.0 * math.log(data.vocab_size) if diverge_loss is None else diverge_loss

    def factor(s: int) -> float:
        return lr_factor(s, steps, int(cfg["warmup_steps"]), float(cfg["decay_ratio"]), float(cfg["min_lr_ratio"]))

    order = batch_order(len(data.train), steps, bs, int(cfg["seed"]) + 1, whole_batches=True)
    hist, t0 = History(), time.perf_counter()
    try:
        fit(
            model,
            optimizer,
            data.train,
            order,
            data.val,
            factor=factor,
            clip=cfg["grad_clip"],
            eval_every=int(cfg["eval_every"] or 0),
            eval_batch=int(cfg["eval_batch_size"]),
            on_step=on_step,
            stop=lambda v: None if math.isfinite(v) and v <= limit else f"training loss {v:.4g}",
            desc=desc or "train",
            history=hist,
        )
    except FloatingPointError as e:
        hist.stopped = f"non-finite gradient at step {len(hist.losses) + 1}: {e}"
    return _result(hist, steps, bs * data.train.shape[1], time.perf_counter() - t0)


def _result(hist: History, steps: int, tokens_per_step: int, wall_s: float) -> dict:
    """The recipes' result dict from a :class:`History` (a non-finite final validation loss counts as diverged)."""
    final = hist.evals[-1]["val_loss"] if hist.stopped is None else None
    if final is not None and not math.isfinite(final):
        hist.stopped, final = "non-finite validation loss", None
    return {
        "final_val_loss": final,
        "diverged": hist.stopped is not None,
        "diverged_reason": hist.stopped,
        "steps_done": len(hist.losses),
        "tokens": len(hist.losses) * tokens_per_step,
        "train_curve": curve(hist.losses, steps),
        "val_curve": [[e["step"], e["val_loss"]] for e in hist.evals if final is not None or e["step"] != steps],
        "wall_s": wall_s,
    }
