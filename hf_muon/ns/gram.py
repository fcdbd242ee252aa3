"""Gram-space Newton-Schulz: the same polynomial iteration, run on the small m×m Gram matrix.

For a normalised wide ``X₀`` (m × n, m ≤ n) every standard Newton-Schulz iterate is ``X_k = Q_k X₀`` with
``Q_k`` an m×m polynomial in ``R = X₀X₀ᵀ`` (Zhang, Amsel, Chen & Dao, *Gram Newton-Schulz*, Dao AI Lab 2026).
With ``A_k = X_k X_kᵀ`` and ``P_k = a·I + b·A_k + c·A_k²``, one standard step ``X ← P_k X`` becomes::

    Q_{k+1} = P_k Q_k            A_{k+1} = P_k A_k P_k        (all m×m; Q₀ = I, A₀ = R)

and the result is ``X_T = Q_T X₀``. Only ``R`` (2m²n FLOPs) and the final product (2m²n) touch the long side,
so T steps cost ``4m²n + (8T − 6)m³`` instead of ``T(4m²n + 2m³)`` (:mod:`hf_muon.ns.cost`): cheaper once
``n > 1.5m``. In exact arithmetic the output equals standard NS; in bf16 the Gram recursion squares the
condition number and drifts (a wide spectrum can blow up: measured ``σ_max`` 245 after 5 Polar Express steps),
so low-precision runs *restart*: ``X ← Q X₀``, ``R ← X Xᵀ``, ``Q ← I`` before every step from step 2 on
(:func:`restart_steps`: {2, 3, 4} for 5 steps): only the first two steps — where the Polar Express gains are
largest and the saving is — stay in Gram space; a one-step segment is exactly a standard step. Measured in bf16
on real momentum matrices of a tiny Llama, 5 steps (standard NS: σ_max 1.112, ‖OOᵀ − I‖₂ 0.236): restarts {2, 3,
4} 1.120 / 0.258; {2, 4} 1.173 / 0.375; {1, 3} 1.128 / 0.273; {3} 62 / 3,837 (diverged). On log-uniform spectra
in [1e-4, 1] one restart at {4} reached σ_max 12,000. So in bf16 Gram space saves little (5 steps on 256×688:
0.93× the standard FLOPs), and :func:`use_gram` mostly declines it; in fp32/fp64 it runs without restarts (the
singular values of standard NS to 1e-3, 0.70× the FLOPs on 256×688).

A restart costs ``4m²n``; :func:`hf_muon.ns.cost.ns_flops` counts it, and :func:`use_gram` (``ns_method="auto"``)
compares the two formulas.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)
# Below this many rows the m×m products are too small to beat one long-side product (measured: see use_gram).
MIN_ROWS = 64
# Gram-space m×m products run at a lower GFLOP/s than the m×n ones; choose Gram only when it saves this much.
AUTO_MARGIN = 0.9


def restart_steps(steps: int, dtype: torch.dtype) -> tuple[int, ...]:
    """Iteration indices before which the Gram recursion restarts from the current ``X`` (bf16/fp16 only)."""
    if dtype not in LOW_PRECISION:
        return ()
    return tuple(range(2, steps))


def use_gram(m: int, n: int, steps: int, dtype: torch.dtype) -> bool:
    """``ns_method="auto"``: Gram space for a wide m×n (m ≤ n) matrix when its FLOPs (restarts included) are at
    most ``AUTO_MARGIN`` × the standard iteration's and ``m ≥ MIN_ROWS``; the standard iteration otherwise."""
    from .cost import ns_flops

    m, n = min(m, n), max(m, n)
    if m < MIN_ROWS or steps < 2:
        return False
    gram = ns_flops((m, n), steps, "gram", len(restart_steps(steps, dtype)))
    return gram <= AUTO_MARGIN * ns_flops((m, n), steps)


def gram_iterate(X: torch.Tensor, triples: Sequence[tuple[float, float, float]],
                 restarts: Sequence[int] = ()) -> torch.Tensor:
    """Newton-Schulz on a normalised wide ``X`` (m, n) or (B, m, n), in Gram space (see the module docstring)."""
    mm, addmm = (torch.bmm, torch.baddbmm) if X.ndim == 3 else (torch.mm, torch.addmm)
    A = mm(X, X.mT)
    Q = None
    last = len(triples) - 1
    for k, (a, b, c) in enumerate(triples):
        if k in restarts and Q is not None:
            X = mm(Q, X)
            A = mm(X, X.mT)
            Q = None
        P = addmm(A, A, A, beta=b, alpha=c)  # b·A + c·A²
        P.diagonal(dim1=-2, dim2=-1).add_(a)  # + a·I
        Q = P if Q is None else mm(P, Q)
        if k < last and (k + 1) not in restarts:
            A = mm(P, mm(A, P))
    return X if Q is None else mm(Q, X)


__all__ = ["gram_iterate", "restart_steps", "use_gram"]
