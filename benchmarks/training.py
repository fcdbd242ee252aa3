"""bench_convergence.py's data and training loop: same weights, same batches, same schedule for every run.

* :func:`prepare_data`: TinyStories from the local mirror → GPT-2 ids → blocks → held-out tail → ids
  re-indexed by training-set frequency (:func:`hf_muon.lab.data.compact_vocab`), plus the batch order.
* :func:`train_run`: trains a copy of the base model with one optimizer line-up, recording validation loss
  (:func:`hf_muon.lab.research.evaluate`, the lab's one definition) against steps and cumulative *training*
  wall time (forward, backward, clipping, optimizer and scheduler steps; data indexing and evaluation excluded).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
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


def prepare_data(data_dir: str, *, block: int, batch: int, steps: int, vocab_keep: int, val_blocks: int,
                 max_tokens: int | None) -> Data:
    """TinyStories → GPT-2 ids → blocks → held-out tail → the ``vocab_keep`` most frequent training ids + "other"."""
    from hf_muon.lab.data import compact_vocab, lm_blocks, load_text, load_tokenizer, train_val_split

    tok = load_tokenizer(data_dir)
    blocks = lm_blocks(tok, load_text(data_dir, "tinystories"), block_size=block, max_tokens=max_tokens)
    train_ds, val_ds = train_val_split(blocks, val_fraction=0.1, max_val=val_blocks)
    train = torch.tensor(train_ds["input_ids"], dtype=torch.long)
    val = torch.tensor(val_ds["input_ids"], dtype=torch.long)
    seen = int((torch.bincount(train.flatten(), minlength=len(tok)) > 0).sum())
    remap = compact_vocab(train, vocab_keep + 1, len(tok))
    train, val = remap[train], remap[val]
    other = vocab_keep

    need = steps * batch
    order = batch_order(len(train), steps, batch)
    info = {
        "corpus": "tinystories (mirror: pretrain/tinystories_validation_head.txt)",
        "tokenizer": "gpt2",
        "data_dir": data_dir,
        "block": block,
        "train_blocks": len(train),
        "val_blocks": len(val),
        "train_tokens": train.numel(),
        "val_tokens": val.numel(),
        "gpt2_ids_seen_in_train": seen,
        "vocab_keep": vocab_keep,
        "model_vocab": vocab_keep + 1,
        "other_fraction_train": float((train == other).float().mean()),
        "other_fraction_val": float((val == other).float().mean()),
        "epochs": need / len(train),
    }
    return Data(train, val, order, vocab_keep + 1, info)


def batch_order(n_train: int, steps: int, batch: int, seed: int = DATA_SEED) -> torch.Tensor:
    """(steps, batch) indices into the training blocks: fresh seeded permutations, one per pass."""
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n_train, generator=gen) for _ in range(math.ceil(steps * batch / n_train))]
    return torch.cat(perms)[:steps * batch].view(steps, batch)


def warmup_steps(steps: int) -> int:
    return max(1, round(WARMUP_FRACTION * steps))


def lr_lambda(steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr before step ``s + 1``: linear warmup, then cosine to MIN_LR_RATIO."""
    warmup = warmup_steps(steps)

    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, steps - warmup))
        return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


@dataclass
class RunSpec:
    name: str  # unique label of the run
    family: str  # "adamw" | "torch_muon" | "hf_muon" | "hf_muon_keller"
    lr: float
    build: Build  # from benchmarks.peers
    note: str


def train_run(spec: RunSpec, base: nn.Module, data: Data, *, steps: int, eval_every: int, eval_batch: int,
              device: torch.device) -> dict:
    """Train a copy of ``base`` with one optimizer line-up; a crash or non-finite loss ends the run with a status."""
    from hf_muon.lab.research import evaluate

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    model = copy.deepcopy(base).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    train, val, order = data.train.to(device), data.val.to(device), data.order.to(device)
    record: dict = {"name": spec.name, "family": spec.family, "lr": spec.lr, "note": spec.note, "status": "ok"}
    evals = [{"step": 0, "train_seconds": 0.0, "val_loss": evaluate(model, val, eval_batch)}]
    step_ms: list[float] = []
    train_losses: list[float] = []
    seconds = 0.0
    with OtherProcesses() as others:
        try:
            stepper: Stepper = spec.build(Routed(model, weight_decay=WEIGHT_DECAY), spec.lr, False)
            f = lr_lambda(steps)
            schedulers = [torch.optim.lr_scheduler.LambdaLR(o, f) for o in stepper.optimizers]
            for step in range(1, steps + 1):
                x = train[order[step - 1]]
                t0 = time.perf_counter()
                loss = model(input_ids=x, labels=x, use_cache=False).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
                stepper.step()
                for s in schedulers:
                    s.step()
                stepper.zero_grad()
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
                    evals.append({"step": step, "train_seconds": seconds, "val_loss": evaluate(model, val, eval_batch)})
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
