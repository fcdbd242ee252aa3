"""Held-out SFT loss: mean NLL on assistant tokens only, with the project's Tulu chat template.

Each conversation is rendered with :data:`hf_muon.lab.chat.TULU_CHAT_TEMPLATE` (passed as ``chat_template=``; the
tokenizer is not modified) and tokenized with ``return_assistant_tokens_mask=True``. The template's
``{% generation %}`` markers cover each assistant message's content **plus its EOS**, which is exactly the set of
tokens TRL's ``assistant_only_loss=True`` trains on, so this loss is comparable to the SFT training loss. Every
token inside the markers is a target (its own prediction from all previous tokens); system/user turns and role
headers are context only. Conversations longer than ``max_length`` tokens are truncated from the right (TRL's
``keep_start``), and counted in ``n_truncated``; one left with no assistant token is skipped (``n_empty``).

Data: ``sft/tulu3_sft_mixture_sample.jsonl`` (``source="tulu3_sft"``, the first 100 rows of
``allenai/tulu-3-sft-mixture``; Hub fallback streams those first 100 rows) or
``sft/tulu3_preference_chosen_as_sft.jsonl`` (``source="tulu3_pref_chosen"``; local only, it is derived data).
Schema ``{id, messages: [{role, content}], source}``. **Held-out convention** (:func:`split_indices`): with
``split="heldout"`` (default) the last ``heldout_fraction`` (10%, at least one) of the valid rows are scored, i.e.
rows 90..99 of the 100-row sample; ``split="train"`` is the complement, which the study should use for SFT training
so that the held-out rows are never trained on; ``split="all"`` scores every row. ``limit`` = first N of the split.

Results: ``loss`` (token-weighted mean over all scored assistant tokens, nats), ``perplexity = exp(loss)``,
``tokens``, ``n_truncated``, ``n_empty`` + the common keys (``n_scored`` = conversations with >= 1 target token).
"""

from __future__ import annotations

from typing import Any

from ..chat import TULU_CHAT_TEMPLATE
from ._runtime import model_max_length, pad_id
from .perplexity import sequence_nll, summarize_nll
from .sources import HubSpec, MalformedRow, load_rows, task_result

SOURCES: dict[str, tuple[str, HubSpec | None]] = {
    "tulu3_sft": ("sft/tulu3_sft_mixture_sample.jsonl", HubSpec("allenai/tulu-3-sft-mixture", None, "train", 100)),
    "tulu3_pref_chosen": ("sft/tulu3_preference_chosen_as_sft.jsonl", None),
}
ROLES = ("system", "user", "assistant")


def parse_row(row: Any) -> dict[str, Any]:
    """Validate one row: ``messages`` is a list of ``{role in system/user/assistant, content: non-empty str}`` with at
    least one assistant message."""
    if not isinstance(row, dict):
        raise MalformedRow(f"expected a JSON object, got {type(row).__name__}")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MalformedRow("'messages' must be a non-empty list")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise MalformedRow(f"message {i} must be {{role: system|user|assistant, content: str}}")
        if not m["content"].strip():
            raise MalformedRow(f"message {i} ({m['role']}) has empty content")
        clean.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in clean):
        raise MalformedRow("no non-empty assistant message")
    return {"id": row.get("id"), "messages": clean}


def split_indices(n: int, split: str = "heldout", heldout_fraction: float = 0.1) -> range:
    """Row indices of ``split`` among ``n`` valid rows: ``heldout`` = the last ``round(n * fraction)`` (>= 1),
    ``train`` = the rest, ``all`` = everything."""
    if split == "all":
        return range(n)
    if split not in ("heldout", "train"):
        raise ValueError(f"split must be 'heldout', 'train' or 'all', got {split!r}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    n_held = max(1, round(n * heldout_fraction)) if n else 0
    return range(n - n_held, n) if split == "heldout" else range(0, n - n_held)


def tokenize_conversation(tokenizer, messages: list[dict[str, str]], max_length: int | None = None):
    """``(input_ids, assistant_mask, truncated)`` for one conversation under the Tulu template."""
    out = tokenizer.apply_chat_template(
        messages, chat_template=TULU_CHAT_TEMPLATE, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = list(out["input_ids"]), [bool(x) for x in out["assistant_masks"]]
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, mask = ids[:max_length], mask[:max_length]
    return ids, mask, truncated


def load(
    data_dir=None,
    source: str = "tulu3_sft",
    split: str = "heldout",
    heldout_fraction: float = 0.1,
    limit: int | None = None,
):
    if source not in SOURCES:
        raise ValueError(f"unknown SFT source {source!r}; choose from {sorted(SOURCES)}")
    rel, hub = SOURCES[source]
    rows, report = load_rows("sft_loss", parse_row, data_dir=data_dir, rel_path=rel, hub=hub)
    rows = [rows[i] for i in split_indices(len(rows), split, heldout_fraction)]
    return (rows if limit is None else rows[:limit]), report


def evaluate_sft_loss(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    source: str = "tulu3_sft",
    split: str = "heldout",
    heldout_fraction: float = 0.1,
    batch_size: int = 4,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """Assistant-token ``loss`` / ``perplexity`` on the held-out conversations; see the module docstring.

    ``max_length`` defaults to ``min(model context, 1024)``.
    """
    rows, report = load(data_dir, source, split, heldout_fraction, limit)
    max_length = max_length or min(model_max_length(model, tokenizer), 1024)
    seqs, masks, n_trunc, kept = [], [], 0, []
    for j, ex in enumerate(rows):
        ids, mask, truncated = tokenize_conversation(tokenizer, ex["messages"], max_length)
        n_trunc += truncated
        if not any(mask[1:]):
            continue
        seqs.append(ids)
        masks.append(mask)
        kept.append(j)
    pairs = sequence_nll(
        model,
        seqs,
        masks,
        batch_size=batch_size,
        pad_token_id=pad_id(tokenizer),
        accelerator=accelerator,
        progress=progress,
        desc="sft_loss",
    )
    metrics = summarize_nll(pairs)
    metrics["n_truncated"] = n_trunc
    metrics["n_empty"] = len(rows) - len(kept)
    config = {
        "source": source,
        "split": split,
        "heldout_fraction": heldout_fraction,
        "max_length": max_length,
        "chat_template": "hf_muon.lab.chat.TULU_CHAT_TEMPLATE",
    }
    samples = None
    if log_samples:
        samples = [{"id": rows[j]["id"], "nll": s, "tokens": n} for j, (s, n) in zip(kept, pairs)]
    return task_result(metrics, n_scored=len(kept), reports=[report], config=config, samples=samples)


__all__ = ["SOURCES", "evaluate_sft_loss", "load", "parse_row", "split_indices", "tokenize_conversation"]
