"""The convergence benchmarks' settings over the lab's one data preparation and training loop: same weights,
same batches, same schedule for every run.

* :func:`prepare_data`: TinyStories from the local mirror through :func:`hf_muon.lab.research.data.text_blocks`
  (GPT-2 ids → blocks → held-out tail → ids re-indexed by training-set frequency), plus the batch order
  (:func:`hf_muon.lab.research.data.batch_order`, permutations concatenated across passes).
* :func:`lr_lambda`: linear warmup over 10% of the steps, then cosine to 0.1× (the lab's
  :func:`~hf_muon.lab.research.train.cosine_factor`).
* :func:`train_run`: trains a copy of the base model with one optimizer line-up in the lab's
  :func:`~hf_muon.lab.research.train.fit`, recording validation loss (:func:`hf_muon.lab.research.evaluate`)
  against steps and cumulative *training* wall time (forward, backward, clipping, optimizer and scheduler steps;
  data indexing and evaluation excluded).
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .machine import OtherProcesses
from .peers import Build, Routed, Stepper

DATA_SEED = 1
WEIGHT_DECAY = 0.1
CLIP_NORM = 1.0
WARMUP_FRACTION = 0.1
MIN_LR_RATIO = 0.1


@dataclass
class Data:
    train: torch.Tensor  # (n_train, block) re-indexed ids
    val: torch.Tensor  # (n_val, block)
    order: torch.Tensor  # (steps, batch) indices into train: the batches, in order
    vocab: int
    info: dict


def prepare_data(
    data_dir: str,
    *,
    block: int,
    batch: int,
    steps: int,
    vocab_keep: int,
    val_blocks: int,
    max_tokens: int | None,
) -> Data:
    """TinyStories → GPT-2 ids → blocks → held-out tail → the ``vocab_keep`` most frequent training ids + "other"
    (the lab's :func:`~hf_muon.lab.research.data.text_blocks`), plus the batch order."""
    from hf_muon.lab.research.data import text_blocks

    lm = text_blocks(
        data_dir,
        corpus="tinystories",
        block_size=block,
        vocab_size=vocab_keep + 1,
        max_tokens=max_tokens,
        val_fraction=0.1,
        max_val_blocks=val_blocks,
    )
    train, val, other = lm.train, lm.val, vocab_keep
    info = {
        "corpus": "tinystories (mirror: pretrain/tinystories_validation_head.txt)",
        "tokenizer": "gpt2",
        "data_dir": data_dir,
        "block": block,
        "train_blocks": len(train),
        "val_blocks": len(val),
        "train_tokens": train.numel(),
        "val_tokens": val.numel(),
        "gpt2_ids_seen_in_train": lm.ids_seen,
        "vocab_keep": vocab_keep,
        "model_vocab": vocab_keep + 1,
        "other_fraction_train": float((train == other).float().mean()),  # float32 means: the committed JSON's
        "other_fraction_val": float((val == other).float().mean()),
        "epochs": steps * batch / len(train),
    }
    return Data(train, val, batch_order(len(train), steps, batch), vocab_keep + 1, info)


def batch_order(n_train: int, steps: int, batch: int, seed: int = DATA_SEED) -> torch.Tensor:
    """(steps, batch) indices into the training blocks: fresh seeded permutations, one per pass, concatenated."""
    from hf_muon.lab.research.data import batch_order as order

    return order(n_train, steps, batch, seed)


def warmup_steps(steps: int) -> int:
    return max(1, round(WARMUP_FRACTION * steps))


def lr_lambda(steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr before step ``s + 1``: linear warmup, then cosine to MIN_LR_RATIO."""
    from hf_muon.lab.research.train import cosine_factor

    warmup = warmup_steps(steps)
    return lambda s: cosine_factor(s, steps, warmup, MIN_LR_RATIO)


@dataclass
class RunSpec:
    name: str  # unique label of the run
    family: str  # "adamw" | "torch_muon" | "hf_muon" | "hf_muon_keller"
    lr: float
    build: Build  # from benchmarks.peers
    note: str


def train_run(
    spec: RunSpec,
    base: nn.Module,
    data: Data,
    *,
    steps: int,
    eval_every: int,
    eval_batch: int,
    device: torch.device,
) -> dict:
    """Train a copy of ``base`` with one optimizer line-up through the lab's loop
    (:func:`hf_muon.lab.research.train.fit`); a crash or non-finite loss ends the run with a status."""
    from hf_muon.lab.research.train import History, evaluate, fit

    model = copy.deepcopy(base).to(device)
    model.train()
    train, val, order = data.train.to(device), data.val.to(device), data.order.to(device)
    record: dict = {
        "name": spec.name,
        "family": spec.family,
        "lr": spec.lr,
        "note": spec.note,
        "status": "ok",
    }
    hist = History(evals=[{"step": 0, "train_seconds": 0.0, "val_loss": evaluate(model, val, eval_batch)}])
    with OtherProcesses() as others:
        try:
            if len(order) < steps:
                raise ValueError(f"the batch order has {len(order)} batches, fewer than steps={steps}")
            stepper: Stepper = spec.build(Routed(model, weight_decay=WEIGHT_DECAY), spec.lr, False)
            fit(
                model,
                stepper,
                train,
                order[:steps],
                val,
                factor=lr_lambda(steps),
                scheduled=stepper.optimizers,
                clip=CLIP_NORM,
                eval_every=eval_every,
                eval_batch=eval_batch,
                history=hist,
                desc=spec.name,
                stop=lambda v: None if math.isfinite(v) else f"train loss {v}",
            )
            if hist.stopped is not None:
                record["status"] = f"diverged ({hist.stopped})"
        except Exception as e:  # e.g. hf_muon's nonfinite="error"; reported, never dropped
            record["status"] = f"failed: {type(e).__name__}: {e}"[:400]
    return _record(record, hist, others.cores)


def _record(record: dict, hist, other_cores) -> dict:
    """``record`` completed from the run's history (the final loss only when the run ended ``ok``)."""
    step_ms = [t * 1e3 for t in hist.step_seconds]
    record.update(
        evals=hist.evals,
        final_val_loss=hist.evals[-1]["val_loss"] if record["status"] == "ok" else None,
        min_val_loss=min(e["val_loss"] for e in hist.evals),
        train_seconds=sum(hist.step_seconds),
        steps_done=len(step_ms),
        step_ms_median=statistics.median(step_ms) if step_ms else None,
        train_loss=hist.losses,
        other_cores=other_cores,
    )
    return record
