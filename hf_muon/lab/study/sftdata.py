"""The study's SFT data: every valid tulu row of the local files (or the Hub), deduplicated, split by hash.

Rows come from each file of ``sft.mirror_file`` (both local files by default: the tulu-3-sft-mixture head and the
Tulu 3 preference mixture's chosen conversations) through the evaluation layer's parser
(:func:`hf_muon.lab.evaluation.sft_loss.parse_row`): broken JSON, a bad role, empty content or no assistant turn is
a counted skip. ``data_dir: null`` reads ``sft.dataset`` from the Hub with the same parser. Duplicates are rows
whose messages (role, content) are identical to an earlier row's, in any file; they are counted and dropped.

Split (:func:`split_rows`): each row's key is ``sha256`` of its canonical message JSON. Rows sorted by key give the
**test** slice (the first ``test_rows``) and the **validation** slice (the next ``val_rows``); the rest, in file
order, is the training set. Fixed by content, independent of seeds and of the file order.

:func:`encode_rows` renders a row with the Tulu template and returns ``input_ids`` and ``labels`` (−100 outside the
assistant tokens: the assistant-only loss, same targets as TRL's ``assistant_only_loss``), cut to ``max_length``
from the right (TRL's ``keep_start``), or, when the prompt alone is longer than that, from the left (the end of the
conversation, with its assistant reply, is kept); rows still without a target are dropped (``no_target``) before
the split, so the slices have their declared sizes.
"""

from __future__ import annotations

import hashlib
import json


def content_key(messages: list[dict]) -> str:
    """``sha256`` of the canonical ``[[role, content], ...]`` JSON of a conversation."""
    canon = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def load_sft_rows(cfg) -> tuple[list[dict], dict]:
    """``(valid unique rows, report)``; the report has per-file ``rows`` / ``malformed`` / ``reasons``, and
    ``duplicates``, ``unique`` overall."""
    from ..data import resolve_data_dir
    from ..evaluation.sft_loss import parse_row
    from ..evaluation.sources import HubSpec, load_rows

    s = cfg.sft
    files = s.mirror_file if (s.mirror_file and resolve_data_dir(cfg.data_dir) is not None) else None
    sources = [(f, True) for f in files] if files else [(s.dataset, False)]
    seen, rows, per_file, duplicates = set(), [], [], 0
    for rel, local in sources:
        hub = HubSpec(s.dataset, None, "train", s.max_rows)
        got, report = load_rows("sft", parse_row, data_dir=cfg.data_dir, rel_path=rel, hub=hub, local=local)
        dup = 0
        for r in got:
            key = content_key(r["messages"])
            if key in seen:
                dup += 1
                continue
            seen.add(key)
            rows.append({**r, "key": key})
        duplicates += dup
        per_file.append({**report.as_dict(), "valid": len(got), "duplicates": dup})
    report = {
        "files": per_file,
        "rows": sum(f["rows"] for f in per_file),
        "malformed": sum(f["malformed"] for f in per_file),
        "duplicates": duplicates,
        "unique": len(rows),
    }
    return rows, report


def split_rows(rows: list[dict], val_rows: int, test_rows: int) -> tuple[list[dict], list[dict], list[dict]]:
    """``(train, val, test)`` by content hash (module docstring); raises when too few rows remain to train on."""
    if val_rows + test_rows >= len(rows):
        raise ValueError(
            f"sft.val_rows + sft.test_rows = {val_rows + test_rows} leave no training rows out of "
            f"{len(rows)} valid unique rows"
        )
    order = sorted(range(len(rows)), key=lambda i: rows[i].get("key") or content_key(rows[i]["messages"]))
    test_idx, val_idx = set(order[:test_rows]), set(order[test_rows : test_rows + val_rows])
    test = [rows[i] for i in order[:test_rows]]
    val = [rows[i] for i in order[test_rows : test_rows + val_rows]]
    train = [r for i, r in enumerate(rows) if i not in test_idx and i not in val_idx]
    return train, val, test


def encode_rows(tok, rows: list[dict], max_length: int) -> list[dict | None]:
    """``[{"input_ids", "labels"} or None]`` per row: Tulu template, labels −100 outside assistant tokens,
    right-truncated; ``None`` for a row with no target token left after truncation."""
    from ..evaluation.sft_loss import tokenize_conversation

    out = []
    for r in rows:
        ids, mask, _ = tokenize_conversation(tok, r["messages"], None)
        if not any(mask[1:max_length]):  # a prompt longer than max_length: keep the end (the assistant reply)
            ids, mask = ids[-max_length:], mask[-max_length:]
        ids, mask = ids[:max_length], mask[:max_length]
        labels = [t if m else -100 for t, m in zip(ids, mask)]
        out.append({"input_ids": ids, "labels": labels} if any(x != -100 for x in labels[1:]) else None)
    return out


class PadCollator:
    """Right-pads ``input_ids`` (pad id), ``labels`` (−100) and builds ``attention_mask``."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        att = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            att[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": att}


__all__ = ["PadCollator", "content_key", "encode_rows", "load_sft_rows", "split_rows"]
