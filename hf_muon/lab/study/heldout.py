"""Held-out numbers computed on the study's own slices: SFT loss and per-token accuracy, pretraining loss.

For a conversation with tokens ``x_1..x_T`` and assistant mask ``m_t`` (the targets of the assistant-only
loss, :mod:`hf_muon.lab.study.sftdata`), over every scored token ``t ≥ 2`` with ``m_t = 1``:

* ``loss = Σ −log p(x_t | x_<t) / N`` (nats per assistant token, token-weighted over the slice),
* ``acc = Σ [argmax_v p(v | x_<t) = x_t] / N`` (per-token accuracy on assistant tokens; the chance rate of a
  uniform guess is 1/V),

with ``N`` the number of scored tokens. The pretraining loss is the same mean NLL over every token but the first of
each validation block (the Trainer's ``eval_loss``); **forgetting** = an SFT model's pretraining validation loss
minus its base's (positive: the SFT moved the model away from the pretraining distribution).
"""

from __future__ import annotations

import math

from .sftdata import PadCollator


def token_metrics(model, examples: list[dict], batch_size: int = 8) -> dict:
    """``{"loss", "acc", "tokens", "n_scored"}`` over ``examples`` (``input_ids`` + ``labels``, −100 = unscored)."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    total, correct, count = 0.0, 0, 0
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            b = PadCollator(0)([examples[i] for i in order[start : start + batch_size]])
            logits = model(
                input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device), use_cache=False
            ).logits.float()
            logits, target = logits[:, :-1], b["labels"][:, 1:].to(device)
            keep = target != -100
            if not bool(keep.any()):
                continue
            nll = F.cross_entropy(logits[keep], target[keep], reduction="sum")
            total += float(nll)
            correct += int((logits[keep].argmax(-1) == target[keep]).sum())
            count += int(keep.sum())
    model.train(was_training)
    loss = total / count if count else float("nan")
    return {
        "loss": loss,
        "acc": correct / count if count else float("nan"),
        "tokens": count,
        "n_scored": len(examples),
        "perplexity": math.exp(min(loss, 50)) if count else float("nan"),
    }


def block_examples(blocks, limit: int | None = None) -> list[dict]:
    """Validation blocks as ``{"input_ids", "labels"}`` examples (every token a target), ``limit`` of them spread
    evenly over the blocks (so a mixed corpus keeps its mix)."""
    ids = list(blocks["input_ids"])
    if limit is not None and limit < len(ids):
        step = len(ids) / limit
        ids = [ids[int(i * step)] for i in range(limit)]
    return [{"input_ids": list(b), "labels": list(b)} for b in ids]


__all__ = ["block_examples", "token_metrics"]
