"""Paired-by-seed comparisons of two study cells: mean difference with a 95 % confidence interval.

Two cells A and B that share seeds (same seed → same data order, same initialisation, for the cross-base
contrasts also the same pretraining seed) give per-seed differences ``d_s = a_s − b_s`` over the seeds both
have. With ``n`` differences, mean ``d̄ = Σ d_s / n`` and sample standard deviation
``s = √(Σ (d_s − d̄)² / (n − 1))``:

* **t interval** (the decision rule): ``d̄ ± t_{0.975, n−1} · s / √n`` (Student's t, two-sided 95 %).
* **paired bootstrap** (shown beside it): resample the ``n`` differences with replacement ``B`` times
  (a fixed RNG seed, so a report is reproducible), take each resample's mean; the interval is the 2.5 and
  97.5 percentiles of those means. With n ≤ 3 it is narrow by construction (it never leaves
  [min d, max d]), which is why the t interval decides.

With ``n = 1`` there is no interval ("n=1, no interval"). An ordering "reproduces" only when the t interval
excludes 0 in the claimed direction (:func:`verdict`).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping

# two-sided 95 % Student t quantiles t_{0.975, df}, df = 1..30; the normal 1.96 beyond
T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
BOOTSTRAP_SEED = 12345
BOOTSTRAP_RESAMPLES = 10_000


def t_quantile(df: int) -> float:
    """``t_{0.975, df}`` (two-sided 95 %)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return T975[df - 1] if df <= len(T975) else 1.96


def paired_differences(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """``{seed: a[seed] − b[seed]}`` over the seeds both cells have, finite values only."""
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b)) if math.isfinite(a[s]) and math.isfinite(b[s])}


def t_interval(d: list[float]) -> tuple[float, float] | None:
    """``d̄ ± t_{0.975, n−1} · s/√n``; ``None`` for fewer than two differences."""
    if len(d) < 2:
        return None
    mean, half = statistics.fmean(d), t_quantile(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return mean - half, mean + half


def bootstrap_interval(
    d: list[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile interval (2.5 %, 97.5 %) of the means of ``resamples`` resamples of ``d``; ``None`` if n < 2."""
    if len(d) < 2:
        return None
    rng = random.Random(seed)
    n = len(d)
    means = sorted(sum(rng.choice(d) for _ in range(n)) / n for _ in range(resamples))
    lo = means[int(math.floor(0.025 * (resamples - 1)))]
    hi = means[int(math.ceil(0.975 * (resamples - 1)))]
    return lo, hi


def paired_contrast(a: Mapping[int, float], b: Mapping[int, float]) -> dict:
    """``{"n", "seeds", "diffs", "mean", "sd", "t_ci", "boot_ci", "excludes_zero"}`` for ``a − b``."""
    diffs = paired_differences(a, b)
    d = list(diffs.values())
    t_ci = t_interval(d)
    return {
        "n": len(d),
        "seeds": list(diffs),
        "diffs": d,
        "mean": statistics.fmean(d) if d else float("nan"),
        "sd": statistics.stdev(d) if len(d) > 1 else None,
        "t_ci": t_ci,
        "boot_ci": bootstrap_interval(d),
        "excludes_zero": bool(t_ci and (t_ci[0] > 0 or t_ci[1] < 0)),
    }


def verdict(c: dict, higher_is_better: bool) -> str:
    """How the contrast ``a − b`` reads: ``"a better"``, ``"b better"`` (the t interval excludes 0 that way),
    ``"not resolved"`` (it includes 0), ``"n=1, no interval"`` or ``"no paired seeds"``."""
    if c["n"] == 0:
        return "no paired seeds"
    if c["n"] == 1:
        return "n=1, no interval"
    if not c["excludes_zero"]:
        return "not resolved"
    a_better = (c["mean"] > 0) == higher_is_better
    return "a better" if a_better else "b better"


def format_ci(c: dict, digits: int = 3) -> str:
    """``"+0.123 [+0.010, +0.236] (boot [+0.05, +0.20], n=3)"``, or the n=1 / empty forms."""
    if c["n"] == 0:
        return "—"
    m = f"{c['mean']:+.{digits}f}"
    if c["n"] == 1:
        return f"{m} (n=1, no interval)"
    lo, hi = c["t_ci"]
    blo, bhi = c["boot_ci"]
    return f"{m} [{lo:+.{digits}f}, {hi:+.{digits}f}] (bootstrap [{blo:+.{digits}f}, {bhi:+.{digits}f}], n={c['n']})"


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "T975",
    "bootstrap_interval",
    "format_ci",
    "paired_contrast",
    "paired_differences",
    "t_interval",
    "t_quantile",
    "verdict",
]
