"""Real mirror text cut into blocks with a re-indexed (compact) vocabulary: :func:`prepare_data`.

The GPT-2 ids are re-indexed to the ``vocab_size − 1`` most frequent ids of the training split plus one
"other" id (:func:`hf_muon.lab.data.compact_vocab`). The text and token sequence are real; the output layer
stays small enough for CPU.
"""

from __future__ import annotations

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


def prepare_data(cfg: dict) -> LMData:
    """Blocks of real mirror text (``cfg`` = the ``data`` section; see ``DATA_DEFAULTS``)."""
    cfg = merge_config(DATA_DEFAULTS, cfg, "data")
    root = resolve_data_dir(cfg["data_dir"], required=True)
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
