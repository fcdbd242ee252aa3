"""Gram-space Newton-Schulz: the same polynomial iteration, run on the small m×m Gram matrix.

For a normalised wide ``X₀`` (m × n, m ≤ n) every standard Newton-Schulz iterate is ``X_k = Q_k X₀`` with
``Q_k`` an m×m polynomial in ``R = X₀X₀ᵀ`` (Zhang, Amsel, Chen & Dao, *Gram Newton-Schulz*, Dao AI Lab 2026).
With ``A_k = X_k X_kᵀ`` and ``P_k = a·I + b·A_k + c·A_k²``, one standard step ``X ← P_k X`` becomes::

    Q_{k+1} = P_k Q_k            A_{k+1} = P_k A_k P_k        (all m×m; Q₀ = I, A₀ = R)

and the result is ``X_T = Q_T X₀``. Only ``R`` (2m²n FLOPs) and the final product (2m²n) touch the long side,
so T steps cost ``4m²n + (8T − 6)m³`` instead of ``T(4m²n + 2m³)`` (:mod:`hf_muon.ns.cost`): cheaper once
``n > 1.5m``. In exact arithmetic the output equals standard NS; in bf16 the Gram recursion squares the
condition number and drifts (a wide spectrum can blow up), so low-precision runs *restart*: ``X ← Q X₀``,
``R ← X Xᵀ``, ``Q ← I`` (:func:`restart_steps`). Where the restarts go is gated by ``tests/ns/test_gram.py``
(bf16 Gram against bf16 standard NS: σ band and ‖OOᵀ − I‖₂ within 0.05): every step from step 2 on below
:data:`SPARSE_RESTART_ROWS` rows, every other step from there up with 5 or more steps, and no Gram space beyond
:data:`MAX_LOW_PRECISION_STEPS` steps in bf16 under ``ns_method="auto"``. In fp32/fp64 it runs without
restarts. The measurements behind these choices are in the docs (*Measurements behind the defaults*).

A restart costs ``4m²n``; :func:`hf_muon.ns.cost.ns_flops` counts it, and :func:`use_gram` (``ns_method="auto"``)
compares the two formulas.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .workspace import scratch

LOW_PRECISION = (torch.bfloat16, torch.float16)
# Below this many rows the m×m products are too small to beat one long-side product.
MIN_ROWS = 64
# Gram-space m×m products run at a lower GFLOP/s than the m×n ones; choose Gram only when it saves this much.
AUTO_MARGIN = 0.9
# From this many rows (the small side) on, low precision restarts every other step instead of every step.
SPARSE_RESTART_ROWS = 256
# ``ns_method="auto"`` takes Gram space in low precision only up to this many steps (the bf16 gate's range).
MAX_LOW_PRECISION_STEPS = 6


def restart_steps(steps: int, dtype: torch.dtype, rows: int = 0) -> tuple[int, ...]:
    """Iteration indices before which the Gram recursion restarts from the current ``X`` (bf16/fp16 only), for a
    matrix whose small side is ``rows``: every step from step 2 on, every other step from
    :data:`SPARSE_RESTART_ROWS` rows and 5 steps up (see the module docstring)."""
    if dtype not in LOW_PRECISION:
        return ()
    every = 2 if rows >= SPARSE_RESTART_ROWS and steps >= 5 else 1
    return tuple(range(2, steps, every))


def use_gram(m: int, n: int, steps: int, dtype: torch.dtype) -> bool:
    """``ns_method="auto"``: Gram space for a wide m×n (m ≤ n) matrix when its FLOPs (restarts included) are at
    most ``AUTO_MARGIN`` × the standard iteration's, ``m ≥ MIN_ROWS`` and, in low precision, ``steps ≤
    MAX_LOW_PRECISION_STEPS``; the standard iteration otherwise."""
    from .cost import ns_flops

    m, n = min(m, n), max(m, n)
    if m < MIN_ROWS or steps < 2 or (dtype in LOW_PRECISION and steps > MAX_LOW_PRECISION_STEPS):
        return False
    gram = ns_flops((m, n), steps, "gram", len(restart_steps(steps, dtype, m)))
    return gram <= AUTO_MARGIN * ns_flops((m, n), steps)


def gram_iterate(
    X: torch.Tensor, triples: Sequence[tuple[float, float, float]], restarts: Sequence[int] = ()
) -> torch.Tensor:
    """Newton-Schulz on a normalised wide ``X`` (m, n) or (B, m, n), in Gram space (see the module docstring).
    The m×m iterates and restarted X's live in reused scratch, A, P, Q and X each in two alternating buffers
    (``A·P`` in one) so no product writes a tensor it reads; the result is a fresh tensor (``X`` itself for 0
    steps). An explicit ``restarts`` is taken as given (the bf16 guard on steps is ``use_gram``'s, for "auto")."""
    mm, addmm = (torch.bmm, torch.baddbmm) if X.ndim == 3 else (torch.mm, torch.addmm)
    small = X.shape[:-1] + X.shape[-2:-1]
    turn = {"A": 0, "P": 0, "Q": 0, "x": 0}

    def buf(role: str, shape=small) -> torch.Tensor:  # the next of the role's two scratch buffers
        turn[role] ^= 1
        return scratch(f"gram.{role}{turn[role]}", shape, X.dtype, X.device)

    A = mm(X, X.mT, out=buf("A"))
    Q = None
    last = len(triples) - 1
    for k, (a, b, c) in enumerate(triples):
        if k in restarts and Q is not None:
            X = mm(Q, X, out=buf("x", X.shape))
            A = mm(X, X.mT, out=buf("A"))
            Q = None
        P = addmm(A, A, A, beta=b, alpha=c, out=buf("P"))  # b·A + c·A²
        P.diagonal(dim1=-2, dim2=-1).add_(a)  # + a·I
        Q = P if Q is None else mm(P, Q, out=buf("Q"))
        if k < last and (k + 1) not in restarts:
            AP = mm(A, P, out=scratch("gram.AP", small, X.dtype, X.device))
            A = mm(P, AP, out=buf("A"))
    return X if Q is None else mm(Q, X)


__all__ = ["MAX_LOW_PRECISION_STEPS", "SPARSE_RESTART_ROWS", "gram_iterate", "restart_steps", "use_gram"]
