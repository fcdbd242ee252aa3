"""Evaluation metrics shipped as evaluate-compatible module scripts, usable with no Hub access.

Each metric is a folder ``hf_muon/metrics/<name>/`` holding

* ``<name>.py``: an ``evaluate.Metric`` subclass (``_info`` + ``_compute``), loadable offline with
  ``evaluate.load("<path to the folder>")`` (evaluate resolves a local folder containing ``<folder>/<folder>.py``
  without touching the network); it imports its definitions from
* ``core.py``: the pure-function definitions (no evaluate / datasets import), re-exported here for unit tests and
  for :mod:`hf_muon.lab.evaluation`, which calls them directly on the main process.

Metrics: ``gsm8k_exact_match`` (lm-eval's ``strict-match`` and ``flexible-extract``, plus the lenient
``numeric_match``), ``mc_accuracy`` (``acc``, ``acc_norm``, optional ``acc_bytes`` /
``acc_per_token``), ``pass_at_k`` (``pass@k``).
"""

from __future__ import annotations

from pathlib import Path

from .gsm8k_exact_match.core import (
    EXACT_MATCH_KWARGS,
    FLEXIBLE_PATTERN,
    HARNESS_FILTERS,
    STRICT_PATTERN,
    answers_match,
    extract_answer,
    extract_reference,
    flexible_extract,
    gsm8k_exact_match,
    gsm8k_harness_match,
    gsm8k_harness_scores,
    gsm8k_match,
    harness_exact_match,
    normalize_number,
    regex_filter,
    strict_extract,
)
from .mc_accuracy.core import mc_accuracy, mc_predict
from .pass_at_k.core import estimate_pass_at_k, pass_at_k

METRICS = ("gsm8k_exact_match", "mc_accuracy", "pass_at_k")


def metric_path(name: str) -> Path:
    """The folder of the bundled metric ``name`` (what ``evaluate.load`` is given)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; bundled: {', '.join(METRICS)}")
    return Path(__file__).resolve().parent / name


def load(name: str, **kwargs):
    """``evaluate.load(str(metric_path(name)), **kwargs)``: the bundled module, loaded from disk, offline-safe."""
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)


__all__ = [
    "EXACT_MATCH_KWARGS",
    "FLEXIBLE_PATTERN",
    "HARNESS_FILTERS",
    "METRICS",
    "STRICT_PATTERN",
    "answers_match",
    "estimate_pass_at_k",
    "extract_answer",
    "extract_reference",
    "flexible_extract",
    "gsm8k_exact_match",
    "gsm8k_harness_match",
    "gsm8k_harness_scores",
    "gsm8k_match",
    "harness_exact_match",
    "load",
    "mc_accuracy",
    "mc_predict",
    "metric_path",
    "normalize_number",
    "pass_at_k",
    "regex_filter",
    "strict_extract",
]
