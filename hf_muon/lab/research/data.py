"""Real mirror text cut into blocks with a re-indexed (compact) vocabulary, and the batches drawn from them.

The lab's one data preparation, used by the recipes, the benchmarks (``benchmarks/training.py``) and the tests:

* :func:`text_blocks`: mirror text → GPT-2 ids → blocks → a held-out contiguous tail → ids re-indexed to the
  ``vocab_size − 1`` most frequent ids of the training split plus one "other" id
  (:func:`hf_muon.lab.data.compact_vocab`). The text and token sequence are real; the output layer stays small
  enough for CPU.
* :func:`prepare_data`: :func:`text_blocks` from a recipe's ``data`` section.
* :func:`batch_order`: the ``(steps, batch)`` indices of every batch, drawn up front from seeded permutations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..data import compact_vocab, lm_blocks, load_text, load_tokenizer, resolve_data_dir
from .config import DATA_DEFAULTS, merge_config


@dataclass
class LMData:
    """Fixed-length token blocks (``(N, T)`` int64) with a re-indexed vocabulary."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    info: dict = field(default_factory=dict)
    ids_seen: int | None = None  # distinct tokenizer ids in the training split before re-indexing


def text_blocks(
    data_dir=None,
    *,
    corpus: str = "tinystories",
    block_size: int,
    vocab_size: int,
    max_tokens: int | None = None,
    val_fraction: float = 0.05,
    max_val_blocks: int | None = None,
) -> LMData:
    """Blocks of real mirror text: the last ``val_fraction`` of blocks (at least one, at most ``max_val_blocks``)
    held out in order, the rest for training, ids re-indexed by training-split frequency."""
    root = resolve_data_dir(data_dir, required=True)
    tok = load_tokenizer(root)
    ds = lm_blocks(tok, load_text(root, corpus), block_size=int(block_size), max_tokens=max_tokens)
    ids = torch.tensor(ds["input_ids"], dtype=torch.long)
    n_val = max(1, round(len(ids) * float(val_fraction)))
    if max_val_blocks:
        n_val = min(n_val, int(max_val_blocks))
    if len(ids) - n_val < 1:
        raise ValueError(f"only {len(ids)} blocks: not enough for a train/val split")
    train_raw, val_raw = ids[: len(ids) - n_val], ids[len(ids) - n_val :]  # contiguous tail, no overlap
    remap = compact_vocab(train_raw, int(vocab_size), len(tok))
    train, val = remap[train_raw], remap[val_raw]
    other = int(vocab_size) - 1
    info = {
        "corpus": corpus,
        "data_dir": str(root),
        "block_size": int(block_size),
        "train_blocks": len(train),
        "val_blocks": len(val),
        "train_tokens": int(train.numel()),
        "vocab_size": int(vocab_size),
        "other_token_share_train": float((train == other).double().mean()),
        "other_token_share_val": float((val == other).double().mean()),
    }
    seen = int((torch.bincount(train_raw.flatten(), minlength=len(tok)) > 0).sum())
    return LMData(train, val, int(vocab_size), info, seen)


def prepare_data(cfg: dict) -> LMData:
    """Blocks of real mirror text (``cfg`` = the ``data`` section; see ``DATA_DEFAULTS``)."""
    cfg = merge_config(DATA_DEFAULTS, cfg, "data")
    return text_blocks(
        cfg["data_dir"],
        corpus=cfg["corpus"],
        block_size=int(cfg["block_size"]),
        vocab_size=int(cfg["vocab_size"]),
        max_tokens=cfg["max_tokens"],
        val_fraction=float(cfg["val_fraction"]),
        max_val_blocks=cfg["max_val_blocks"],
    )


def batch_order(n_train: int, steps: int, batch: int, seed: int, *, whole_batches: bool = False) -> torch.Tensor:
    """``(steps, batch)`` indices into the training blocks: fresh permutations from ``Generator(seed)``, one per pass.

    ``whole_batches=False``: the permutations are concatenated, so a batch may span two passes (the benchmarks).
    ``True``: each pass gives ``n_train // batch`` batches and drops its remainder (the recipes); with fewer
    blocks than ``batch`` every step takes one whole permutation (``n_train`` rows).
    """
    if n_train < 1 or steps < 0 or batch < 1:
        raise ValueError(f"batch_order: need n_train >= 1, steps >= 0, batch >= 1 (got {n_train}, {steps}, {batch})")
    gen = torch.Generator().manual_seed(seed)
    if not whole_batches:
        perms = [torch.randperm(n_train, generator=gen) for _ in range(math.ceil(steps * batch / n_train))]
        return torch.cat(perms or [torch.empty(0, dtype=torch.long)])[: steps * batch].view(steps, batch)
    take = min(batch, n_train)
    if take < batch:  # the recipes' loop drew a first permutation and replaced it at step 1 unused
        torch.randperm(n_train, generator=gen)
    per_pass = n_train // take
    passes = [
        torch.randperm(n_train, generator=gen)[: per_pass * take].view(per_pass, take)
        for _ in range(math.ceil(steps / per_pass))
    ]
    return torch.cat(passes or [torch.empty(0, take, dtype=torch.long)])[:steps]
