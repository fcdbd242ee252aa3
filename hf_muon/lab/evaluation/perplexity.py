"""Token-level negative log-likelihood, and perplexity on fixed-length text blocks.

:func:`sequence_nll` is the shared core (also used by :mod:`~hf_muon.lab.evaluation.sft_loss`): for each token sequence
``x`` and target mask ``m`` it returns ``(sum_t m_t * -log p(x_t | x_<t), sum_t m_t)`` over ``t >= 1`` (the first
token has no context and is never scored). Rows are right-padded; log-softmax / cross-entropy in float32.

:func:`evaluate_perplexity` scores a corpus of the local mirror the way the project trains on it
(:func:`hf_muon.lab.data.lm_blocks`: one token stream cut into non-overlapping ``block_size`` blocks, each scored
independently, the first token of each block unscored). ``split="val"`` keeps the held-out tail that
:func:`hf_muon.lab.data.train_val_split` produces (last ``val_fraction`` of blocks); ``split="all"`` uses every block.
``limit`` = the first N blocks of the split. Results: ``loss`` (token-weighted mean NLL, nats/token),
``perplexity = exp(loss)``, ``tokens`` (scored tokens), ``blocks``. That ``loss`` is the lab's one validation-loss
definition (mean NLL per scored token); :func:`hf_muon.lab.research.evaluate` computes the same quantity on its
equal-length blocks.

Memory: a batch materialises ``batch_size x block_size x vocab`` float logits (e.g. 8 x 128 x 50,257 x 4 B = 206 MB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data import corpus_path, lm_blocks, load_documents, resolve_data_dir, train_val_split
from ._runtime import eval_mode, model_device, pad_id, run_batches
from .sources import HubSpec, LoadReport, iter_hub, task_result

# Hub fallback (data_dir None and $HF_MUON_DATA unset) for the corpora that have a small validation split
HUB_CORPORA = {
    "tinystories": (HubSpec("roneneldan/TinyStories", None, "validation"), "\n\n"),
    "wikitext2": (HubSpec("Salesforce/wikitext", "wikitext-2-v1", "validation"), ""),
}


def sequence_nll(
    model,
    sequences: Sequence[Sequence[int]],
    target_masks: Sequence[Sequence[bool]] | None = None,
    *,
    batch_size: int = 8,
    pad_token_id: int = 0,
    accelerator=None,
    progress: bool = True,
    desc: str = "nll",
) -> list[tuple[float, int]]:
    """``[(summed NLL in nats, number of scored tokens)]`` per sequence, in input order (see module docstring)."""
    seqs = [list(map(int, s)) for s in sequences]
    if target_masks is not None and len(target_masks) != len(seqs):
        raise ValueError(f"{len(target_masks)} target masks for {len(seqs)} sequences")
    masks = [list(map(bool, m)) for m in target_masks] if target_masks is not None else [[True] * len(s) for s in seqs]
    for i, (s, m) in enumerate(zip(seqs, masks)):
        if len(s) != len(m):
            raise ValueError(f"sequence {i}: {len(s)} tokens but a target mask of {len(m)}")
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i))
    device = model_device(model)

    def score(batch: list[int]) -> list[tuple[float, int]]:
        width = max(max(len(seqs[i]) for i in batch), 1)
        ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, : len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
            att[r, : len(seqs[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=att.to(device), use_cache=False).logits
        out = []
        for r, i in enumerate(batch):
            n = len(seqs[i])
            tmask = torch.tensor(masks[i][1:n], dtype=torch.bool, device=logits.device)
            if n < 2 or not bool(tmask.any()):
                out.append((0.0, 0))
                continue
            target = ids[r, 1:n].to(logits.device)
            nll = F.cross_entropy(logits[r, : n - 1].float(), target, reduction="none")
            out.append((float(nll[tmask].sum().item()), int(tmask.sum().item())))
        return out

    with eval_mode(model):
        got = run_batches(order, score, batch_size=batch_size, accelerator=accelerator, progress=progress, desc=desc)
    return [got[i] for i in range(len(seqs))]


def summarize_nll(pairs: Sequence[tuple[float, int]]) -> dict[str, float]:
    """``{"loss": sum NLL / tokens, "perplexity": exp(loss), "tokens": tokens}`` (``nan`` loss with no tokens)."""
    total = sum(p[0] for p in pairs)
    tokens = sum(p[1] for p in pairs)
    if not tokens:
        return {"loss": float("nan"), "perplexity": float("nan"), "tokens": 0}
    loss = total / tokens
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf"), "tokens": tokens}


def load_blocks(
    tokenizer,
    *,
    data_dir=None,
    corpus: str = "tinystories",
    block_size: int = 128,
    split: str = "val",
    val_fraction: float = 0.1,
    limit: int | None = None,
):
    """``(list of token blocks, LoadReport)`` for the perplexity corpus (see the module docstring)."""
    if split not in ("val", "all"):
        raise ValueError(f"split must be 'val' or 'all', got {split!r}")
    if resolve_data_dir(data_dir) is not None:
        docs = load_documents(data_dir, corpus)
        text: str | list[str] = docs if corpus == "c4" else "\n\n".join(docs)
        source = str(corpus_path(data_dir, corpus))
    else:
        if corpus not in HUB_CORPORA:
            raise ValueError(f"no Hub fallback for corpus {corpus!r} (have {sorted(HUB_CORPORA)}); pass data_dir")
        spec, sep = HUB_CORPORA[corpus]
        text = sep.join(row["text"] for _, row in iter_hub(spec))
        source = f"hub:{spec.name}[{spec.split}]"
    blocks = lm_blocks(tokenizer, text, block_size=block_size)
    if split == "val":
        _, blocks = train_val_split(blocks, val_fraction=val_fraction)
    ids = list(blocks["input_ids"])
    if limit is not None:
        ids = ids[:limit]
    report = LoadReport(task="perplexity", source=source, rows=len(ids))
    return ids, report


def evaluate_perplexity(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    corpus: str = "tinystories",
    block_size: int = 128,
    split: str = "val",
    val_fraction: float = 0.1,
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """``loss``, ``perplexity``, ``tokens``, ``blocks`` + the common keys (``n_scored`` = blocks)."""
    if max_length is not None and block_size > max_length:
        raise ValueError(f"block_size={block_size} exceeds max_length={max_length}")
    blocks, report = load_blocks(
        tokenizer,
        data_dir=data_dir,
        corpus=corpus,
        block_size=block_size,
        split=split,
        val_fraction=val_fraction,
        limit=limit,
    )
    pairs = sequence_nll(
        model,
        blocks,
        batch_size=batch_size,
        pad_token_id=pad_id(tokenizer),
        accelerator=accelerator,
        progress=progress,
        desc="perplexity",
    )
    metrics = summarize_nll(pairs)
    metrics["blocks"] = len(blocks)
    config = {"corpus": corpus, "block_size": block_size, "split": split, "val_fraction": val_fraction}
    samples = [{"nll": s, "tokens": n} for s, n in pairs] if log_samples else None
    return task_result(metrics, n_scored=len(blocks), reports=[report], config=config, samples=samples)


__all__ = ["evaluate_perplexity", "load_blocks", "sequence_nll", "summarize_nll"]
