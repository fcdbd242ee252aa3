"""Newton-Schulz coefficient schedules.

An odd quintic ``p(x) = a·x + b·x³ + c·x⁵`` applied to the singular values of a Frobenius-normalised
matrix ``X`` (``X ← a·X + b·(XXᵀ)X + c·(XXᵀ)²X``) pushes every singular value in (0, 1] toward 1.
A *schedule* is the list of ``(a, b, c)`` used at each iteration.

Presets
-------
``"keller"``
    Keller Jordan's fixed quintic (3.4445, −4.7750, 2.0315), repeated every step. It maximises the
    slope at zero (``a``) while keeping the limit inside roughly (0.7, 1.2); each extra step lowers the
    smallest singular value that gets lifted by about ``a ≈ 3.44×``.
``"polar_express"``
    Amsel, Persson, Musco & Gower, *The Polar Express* (arXiv 2505.16932), Algorithm 1 with
    degree 5, ℓ = 1e-3, u = 1: one optimal polynomial per iteration. The paper's safety factor
    replaces ``p_t(x)`` by ``p_t(x/1.01)`` for every polynomial but the last; steps beyond the
    tabulated eight repeat the last (converged) polynomial ``(15/8, −10/8, 3/8)``.
``"polar_express_1e-2"``
    The same greedy construction (Polar Express Alg. 1: each polynomial the odd quintic minimising
    ``max |1 − p(x)|`` on the current interval ``[ℓ, u]``, the next interval ``[1 − t, 1 + t]``) started from
    ℓ = 1e-2 instead of 1e-3, computed here by a linear program on a fine grid
    (:mod:`hf_muon.lab.research.minimax`; a test recomputes it). Its error bound after 4 steps is 0.0125 on
    [1e-2, 1] (Polar Express ℓ = 1e-3: 0.546 after 4 steps, 0.113 after 5): 4 steps of it beat 5 Polar Express
    steps where the normalised σ_min ≥ 1e-2, but lift smaller singular values less, which real momenta have
    (many σ below 1e-2), so it is an option, not the default (``benchmarks/bench_ns_defaults.py``; the
    measurements are in the docs, *Measurements behind the defaults*). Same safety factor and normalisation as
    ``"polar_express"``.
a custom list
    Any sequence of ``(a, b, c)`` triples; shorter than ``steps`` means "repeat the last".
"""

from __future__ import annotations

from collections.abc import Sequence

Triple = tuple[float, float, float]

KELLER: Triple = (3.4445, -4.7750, 2.0315)

# Polar Express, degree 5, l=1e-3, u=1 (paper Alg. 1 / official repo), before the safety factor.
_POLAR_EXPRESS_RAW: tuple[Triple, ...] = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)
POLAR_EXPRESS_SAFETY = 1.01


def _with_safety(raw: Sequence[Triple], safety: float) -> tuple[Triple, ...]:
    """p(x) -> p(x / safety) for every polynomial except the last one."""
    out = [(a / safety, b / safety**3, c / safety**5) for a, b, c in raw[:-1]]
    return tuple(out) + (tuple(raw[-1]),)


POLAR_EXPRESS: tuple[Triple, ...] = _with_safety(_POLAR_EXPRESS_RAW, POLAR_EXPRESS_SAFETY)

# The greedy minimax ladder from ℓ = 1e-2 (hf_muon.lab.research.minimax.ladder(1e-2, 4)), then the converged
# polynomial; error bounds t after each step: 0.919, 0.707, 0.269, 0.0125.
_POLAR_EXPRESS_1E2_RAW: tuple[Triple, ...] = (
    (8.093369023021944, -23.62043158574758, 17.446152492927),
    (3.6365856685954503, -2.721926862009343, 0.5365463117005076),
    (2.6612999625807756, -1.9771545074180352, 0.45261640876065745),
    (1.956171613739844, -1.3375077173117207, 0.3838526970562219),
    (1.875, -1.25, 0.375),
)
POLAR_EXPRESS_1E2: tuple[Triple, ...] = _with_safety(_POLAR_EXPRESS_1E2_RAW, POLAR_EXPRESS_SAFETY)

PRESETS = ("keller", "polar_express", "polar_express_1e-2")


def normalization_scale(coefficients) -> float:
    """Extra factor on the Frobenius norm used to normalise the input (Polar Express uses 1.01)."""
    return POLAR_EXPRESS_SAFETY if _is_polar_express(coefficients) else 1.0


def _is_polar_express(coefficients) -> bool:
    return isinstance(coefficients, str) and coefficients in (
        "polar_express",
        "polar-express",
        "polarexpress",
        "polar_express_1e-2",
    )


def schedule(coefficients: str | Sequence[float] | Sequence[Sequence[float]], steps: int) -> list[Triple]:
    """Resolve ``coefficients`` into exactly ``steps`` ``(a, b, c)`` triples.

    ``coefficients`` is a preset name, one triple, or a list of triples (the last one repeats).
    For Polar Express with fewer than 8 steps the schedule is truncated, as in the paper's code; the
    safety factor then applies to every step taken (the paper's own recommendation for T = 5 or 6).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"ns steps must be a non-negative int, got {steps!r}")
    if isinstance(coefficients, str):
        if coefficients == "keller":
            table: Sequence[Triple] = (KELLER,)
        elif coefficients == "polar_express_1e-2":
            table = POLAR_EXPRESS_1E2
        elif _is_polar_express(coefficients):
            table = POLAR_EXPRESS
        else:
            raise ValueError(
                f"unknown coefficient preset {coefficients!r}; valid: {', '.join(PRESETS)} or a list of (a, b, c)"
            )
    else:
        seq = list(coefficients)
        if not seq:
            raise ValueError("coefficients list is empty")
        if all(isinstance(x, (int, float)) for x in seq):
            seq = [seq]
        table = []
        for i, t in enumerate(seq):
            t = tuple(float(x) for x in t)
            if len(t) != 3:
                raise ValueError(f"coefficient triple #{i} must have 3 entries (a, b, c), got {t}")
            table.append(t)  # type: ignore[arg-type]
    return [tuple(table[min(i, len(table) - 1)]) for i in range(steps)]  # type: ignore[misc]


def scalar_map(x, coefficients="keller", steps: int = 5):
    """Apply the composed scalar polynomial to singular values ``x`` (array-like, float64).

    This is exactly what Newton-Schulz does to each singular value of the normalised input, so it
    gives lift thresholds without any matrix work (used by the ``"auto"`` step schedule).
    """
    import numpy as np

    y = np.asarray(x, dtype=np.float64) / normalization_scale(coefficients)
    for a, b, c in schedule(coefficients, steps):
        y2 = y * y
        y = y * (a + y2 * (b + c * y2))
    return y
