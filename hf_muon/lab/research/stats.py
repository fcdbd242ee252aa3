"""The small statistics of the reports: :func:`fit_power_law` (least squares of ``log y = c + α log x``: slope
α, R², standard error), :func:`lr_grid` / :func:`best_lr` (log-spaced grids and the best point with a parabolic
refinement in log-lr and an "interior" flag: the optimum is not at a grid edge).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares fit of ``log y = c + α·log x`` (natural logs); returns α, c, R², the standard
    error of α and the number of points. Needs ≥ 2 positive points."""
    import numpy as np

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = (xs > 0) & (ys > 0) & np.isfinite(xs) & np.isfinite(ys)
    lx, ly = np.log(xs[ok]), np.log(ys[ok])
    n = len(lx)
    if n < 2:
        raise ValueError(f"a power-law fit needs at least 2 positive points, got {n}")
    A = np.stack([np.ones(n), lx], axis=1)
    (c, alpha), *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - (c + alpha * lx)
    ss_res = float((resid**2).sum())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    sxx = float(((lx - lx.mean()) ** 2).sum())
    stderr = math.sqrt(ss_res / (n - 2) / sxx) if n > 2 and sxx > 0 else float("nan")
    return {"alpha": float(alpha), "c": float(c), "r2": r2, "stderr": stderr, "n": n}


def lr_grid(center: float, factor: float, points: int) -> list[float]:
    """``points`` log-spaced lrs with ratio ``factor`` between neighbours, centred (geometrically) on ``center``."""
    if points < 1 or factor <= 1 or center <= 0:
        raise ValueError("lr_grid needs points >= 1, factor > 1, center > 0")
    half = (points - 1) / 2
    return [float(f"{center * factor ** (i - half):.4g}") for i in range(points)]


def best_lr(lrs: Sequence[float], losses: Sequence[float | None]) -> dict:
    """Best grid point (``None`` losses count as diverged), whether it is interior, and a parabolic
    refinement of the optimum in log-lr through the best point and its two neighbours (interior only)."""
    pts = sorted((float(lr), float("inf") if v is None else float(v)) for lr, v in zip(lrs, losses))
    vals = [v for _, v in pts]
    if not pts or all(math.isinf(v) for v in vals):
        return {"best_lr": None, "best_loss": None, "interior": False, "refined_lr": None, "diverged_all": True}
    i = min(range(len(pts)), key=lambda k: vals[k])
    interior = 0 < i < len(pts) - 1
    refined = pts[i][0]
    if interior and all(math.isfinite(vals[k]) for k in (i - 1, i, i + 1)):
        x = [math.log(pts[k][0]) for k in (i - 1, i, i + 1)]
        y = [vals[k] for k in (i - 1, i, i + 1)]
        den = (x[0] - x[1]) * (x[0] - x[2]) * (x[1] - x[2])
        a = (x[2] * (y[1] - y[0]) + x[1] * (y[0] - y[2]) + x[0] * (y[2] - y[1])) / den
        b = (x[2] ** 2 * (y[0] - y[1]) + x[1] ** 2 * (y[2] - y[0]) + x[0] ** 2 * (y[1] - y[2])) / den
        if a > 0:
            refined = math.exp(min(max(-b / (2 * a), x[0]), x[2]))
    return {
        "best_lr": pts[i][0],
        "best_loss": vals[i],
        "interior": interior,
        "refined_lr": refined,
        "diverged_all": False,
    }
