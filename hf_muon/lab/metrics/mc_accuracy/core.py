"""Multiple-choice accuracy from per-choice log-likelihoods: pure functions (numpy only).

Definitions (one example has choices ``i = 0..C-1`` with summed continuation log-likelihoods ``ll_i``)
---------------------------------------------------------------------------------------------------
* ``acc``: ``argmax_i ll_i == gold``.
* ``acc_norm``: ``argmax_i ll_i / len_chars_i == gold``, where ``len_chars_i`` is the length **in characters** of the
  choice string *without* the leading target delimiter (e.g. ``"Paris"``, not ``" Paris"``). This is what
  lm-evaluation-harness computes for ``acc_norm``: ``completion_len = [float(len(c)) for c in doc_to_choice(doc)]``
  then ``argmax(lls / completion_len)`` (``lm_eval/api/task.py``, ``process_results`` for ``multiple_choice``).
  Python's ``len`` counts code points, not bytes, although the harness docs and Gao's note "Multiple Choice
  Normalization in LM Evaluation" (2021) describe it as byte-length normalisation; the two agree on ASCII text.
* ``acc_bytes`` (only when byte lengths are given): ``argmax_i ll_i / len_utf8_bytes_i``, the literal byte-length
  normalisation (lm-eval names this metric ``acc_bytes``).
* ``acc_per_token`` (only when token lengths are given): ``argmax_i ll_i / n_tokens_i`` (OLMES ``acc_per_token``,
  lighteval ``LogProbTokenNorm``).

Ties are broken by the **lowest index** (``numpy.argmax`` semantics, as in lm-evaluation-harness): an example whose
gold choice ties with an earlier choice counts as wrong. ``NaN`` log-likelihoods are treated as ``-inf`` (never
chosen) instead of letting ``numpy.argmax`` pick the NaN. Each metric is the mean of the per-example 0/1 scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mc_predict(loglikelihoods: Sequence[float], lengths: Sequence[float] | None = None) -> int:
    """Index of the best choice: ``argmax(ll)`` or ``argmax(ll / lengths)``; ties -> lowest index, NaN -> ``-inf``."""
    ll = np.asarray(loglikelihoods, dtype=np.float64)
    if ll.ndim != 1 or ll.size == 0:
        raise ValueError(f"expected a non-empty 1-D list of log-likelihoods, got shape {ll.shape}")
    ll = np.where(np.isnan(ll), -np.inf, ll)
    if lengths is not None:
        n = np.asarray(lengths, dtype=np.float64)
        if n.shape != ll.shape:
            raise ValueError(f"{n.size} lengths for {ll.size} choices")
        if not np.all(n > 0):
            raise ValueError(f"choice lengths must be positive, got {list(n)}")
        ll = ll / n
    return int(np.argmax(ll))


def mc_accuracy(
    loglikelihoods: Sequence[Sequence[float]],
    golds: Sequence[int],
    choice_lengths: Sequence[Sequence[float]] | None = None,
    choice_byte_lengths: Sequence[Sequence[float]] | None = None,
    choice_token_lengths: Sequence[Sequence[float]] | None = None,
) -> dict[str, float]:
    """``{"acc", "acc_norm"?, "acc_bytes"?, "acc_per_token"?}`` averaged over examples.

    ``loglikelihoods[j][i]`` is the summed log-likelihood of choice ``i`` of example ``j``; ``golds[j]`` the gold
    index. ``acc_norm`` needs ``choice_lengths`` (characters), ``acc_bytes`` needs ``choice_byte_lengths`` and
    ``acc_per_token`` needs ``choice_token_lengths``; each key is present only when its lengths are given.
    Empty input gives ``0.0`` for every key.
    """
    n = len(loglikelihoods)
    if len(golds) != n:
        raise ValueError(f"{n} examples of log-likelihoods but {len(golds)} gold indices")
    variants = {"acc_norm": choice_lengths, "acc_bytes": choice_byte_lengths, "acc_per_token": choice_token_lengths}
    for name, lens in variants.items():
        if lens is not None and len(lens) != n:
            raise ValueError(f"{name}: {len(lens)} length lists for {n} examples")
    hits = {"acc": 0}
    hits.update({name: 0 for name, lens in variants.items() if lens is not None})
    for j in range(n):
        gold = int(golds[j])
        if not 0 <= gold < len(loglikelihoods[j]):
            raise ValueError(f"example {j}: gold index {gold} out of range for {len(loglikelihoods[j])} choices")
        hits["acc"] += mc_predict(loglikelihoods[j]) == gold
        for name, lens in variants.items():
            if lens is not None:
                hits[name] += mc_predict(loglikelihoods[j], lens[j]) == gold
    return {k: (v / n if n else 0.0) for k, v in hits.items()}


__all__ = ["mc_accuracy", "mc_predict"]
