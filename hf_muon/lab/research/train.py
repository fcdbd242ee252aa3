"""The recipes' training loop.

* :func:`train`: random shuffled blocks, a warmup → constant → linear decay schedule (:func:`lr_factor`),
  optional grad clipping, periodic validation, a ``tqdm`` bar (honours ``TQDM_DISABLE=1``), a per-step hook
  and divergence detection.
* :func:`evaluate`: the lab's validation loss (its definition is in the function's docstring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .config import TRAIN_DEFAULTS, merge_config
from .data import LMData


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
