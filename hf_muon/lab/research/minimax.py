"""Greedy minimax Newton-Schulz ladders: how the ``"polar_express_1e-2"`` coefficients were computed.

Polar Express (Amsel, Persson, Musco & Gower, arXiv 2505.16932, Alg. 1) builds its schedule greedily: on the
interval ``[ℓ, u]`` that the singular values of the normalised matrix occupy, step k uses the odd quintic
``p(x) = a x + b x³ + c x⁵`` minimising ``t = max_{x∈[ℓ,u]} |1 − p(x)|``; afterwards every singular value lies
in ``[1 − t, 1 + t]``, the next step's interval. Here each minimax problem is a linear program in ``(a, b, c, t)``
over a fine grid of ``[ℓ, u]`` (geometric plus uniform points), solved by scipy's HiGHS. From ℓ = 1e-3 it
gives the paper's ladder to within the grid's accuracy (first polynomial (8.47, −25.1, 18.6) vs the paper's
(8.29, −23.6, 17.3), the same error bounds 0.99, 0.96, 0.86, 0.55, 0.11 to two digits); from ℓ = 1e-2 the
table in :mod:`hf_muon.ns.coefficients`.

Needs scipy (the ``dev`` extra); the plugin only stores the resulting numbers.
"""

from __future__ import annotations

import numpy as np


def best_quintic(lo: float, hi: float, points: int = 4000) -> tuple[tuple[float, float, float], float]:
    """The odd quintic minimising ``max |1 − p(x)|`` on ``[lo, hi]`` (grid LP) and that maximum ``t``."""
    from scipy.optimize import linprog

    x = np.concatenate([np.geomspace(lo, hi, points), np.linspace(lo, hi, points)])
    P = np.stack([x, x**3, x**5], axis=1)
    ones = np.ones((len(x), 1))
    A_ub = np.vstack([np.hstack([-P, -ones]), np.hstack([P, -ones])])  # 1 − p ≤ t and p − 1 ≤ t
    b_ub = np.concatenate([-np.ones(len(x)), np.ones(len(x))])
    res = linprog([0, 0, 0, 1], A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * 3 + [(0, None)], method="highs")
    if not res.success:
        raise RuntimeError(f"minimax LP on [{lo}, {hi}] failed: {res.message}")
    a, b, c, t = res.x
    return (float(a), float(b), float(c)), float(t)


def ladder(lo: float, steps: int, hi: float = 1.0) -> list[tuple[tuple[float, float, float], float]]:
    """``steps`` greedy polynomials from the interval ``[lo, hi]``, each with its error bound ``t``."""
    out = []
    for _ in range(steps):
        coeffs, t = best_quintic(lo, hi)
        out.append((coeffs, t))
        lo, hi = 1.0 - t, 1.0 + t
    return out


__all__ = ["best_quintic", "ladder"]
