"""Gram-space Newton-Schulz: the same polynomial iteration, run on the small m×m Gram matrix.

For a normalised wide ``X₀`` (m × n, m ≤ n) every standard Newton-Schulz iterate is ``X_k = Q_k X₀`` with
``Q_k`` an m×m polynomial in ``R = X₀X₀ᵀ`` (Zhang, Amsel, Chen & Dao, *Gram Newton-Schulz*, Dao AI Lab 2026).
With ``A_k = X_k X_kᵀ`` and ``P_k = a·I + b·A_k + c·A_k²``, one standard step ``X ← P_k X`` becomes::

    Q_{k+1} = P_k Q_k            A_{k+1} = P_k A_k P_k        (all m×m; Q₀ = I, A₀ = R)

and the result is ``X_T = Q_T X₀``. Only ``R`` (2m²n FLOPs) and the final product (2m²n) touch the long side,
so T steps cost ``4m²n + (8T − 6)m³`` instead of ``T(4m²n + 2m³)`` (:mod:`hf_muon.ns.cost`): cheaper once
``n > 1.5m``. In exact arithmetic the output equals standard NS; in bf16 the Gram recursion squares the
condition number and drifts (a wide spectrum can blow up: measured ``σ_max`` 245 after 5 Polar Express steps),
so low-precision runs *restart*: ``X ← Q X₀``, ``R ← X Xᵀ``, ``Q ← I`` (:func:`restart_steps`). Where the
restarts go was measured in bf16 against standard NS in bf16 (the gate of ``tests/ns/test_gram.py``: σ band and
‖OOᵀ − I‖₂ within 0.05), worst case over Gaussian, log-uniform [1e-3, 1] and [1e-4, 1] and rank-⅓ spectra, 2–3
seeds, aspect ratios 2–4, Polar Express 5 steps:

* every step from step 2 on ({2, 3, 4}: the first two steps in Gram space, then standard steps) stays within
  +0.006 to +0.035 of standard NS at every size from 32 rows;
* every *other* step ({2, 4}: segments of 2, 2, 1 steps) stays within +0.038 from 256 rows up (+0.003 to +0.021
  from 384 rows; on the momenta of llama-7.4M and gpt2-small: σ_max 1.127 vs 1.124, ‖OOᵀ − I‖₂ equal), but
  not below: +0.09 to +0.27 at 32–128 rows on Gaussian and rank-deficient inputs. 6 steps ({2, 4}) and Keller's
  quintic behave the same; 4 steps with one restart ({2}) do not (+0.088 at 256 rows); with 8 Polar Express steps
  both placements end +0.054 to +0.10 from standard NS at 256–768 rows, so ``ns_method="auto"`` keeps the standard
  iteration beyond :data:`MAX_LOW_PRECISION_STEPS` in bf16. One restart at {3} diverges on small real momenta
  (σ_max 234 at 32×64);
* one restart at {3} (segments of 3 and 2 steps, 0.87× the FLOPs of {2, 4} on GPT-2's 768×{2304, 3072}) stays
  within +0.008 on gpt2-small's momenta and +0.030 on Gaussian and log-uniform inputs at 768 rows, but fails on a
  *spike* spectrum (one σ = 1, the rest 1e-3; rank-1-dominated gradients): σ_min 0.68–0.71 against 0.80–0.81
  for standard NS at 768×3072 and 1024×4096; at 256–384 rows it fails on llama-7.4M's momenta (up to +3.9).
  Not used;
* {2, 4} checked again at 768–2048 rows (aspect 2–4; Gaussian, flat, σ ∝ i^-½, i^-1, i^-2, spike, three
  spikes over 1e-2, log-uniform [1e-5, 1], half the spectrum at 1e-4), Polar Express: σ_max and max|σ − 1|
  within +0.044 of standard NS, except σ_max 0.938 against 0.878 on the spike at 2048×8192 (every step,
  {2, 3, 4}: 0.940), inside [0, 1] and closer to 1 than standard NS's. Keller's quintic: +0.045 to +0.052 in
  σ_max on the half spectrum at 768–1024 rows (0.83–0.87 against 0.78–0.82, inside its band), the same for
  {2, 3, 4}.

So :func:`restart_steps` restarts every other step for ≥ :data:`SPARSE_RESTART_ROWS` rows and 5 or more steps,
every step otherwise. In bf16 on 256×688 that is 0.85× the standard FLOPs (every step: 0.93×), on 768×3072
0.78× (0.89×); measured against the standard floor (``bench_step.py``): 0.87× on llama-7.4M's 256×688 (every
step: 0.92×), 0.78× on GPT-2's 768×{2304, 3072} (0.84–0.86×). In fp32/fp64 it runs without restarts (the singular values of standard NS to 1e-3, 0.70× the
FLOPs on 256×688).

A restart costs ``4m²n``; :func:`hf_muon.ns.cost.ns_flops` counts it, and :func:`use_gram` (``ns_method="auto"``)
compares the two formulas.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .workspace import scratch

LOW_PRECISION = (torch.bfloat16, torch.float16)
# Below this many rows the m×m products are too small to beat one long-side product (measured: see use_gram).
MIN_ROWS = 64
# Gram-space m×m products run at a lower GFLOP/s than the m×n ones; choose Gram only when it saves this much.
AUTO_MARGIN = 0.9
# From this many rows (the small side) on, low precision restarts every other step instead of every step (measured).
SPARSE_RESTART_ROWS = 256
# ``ns_method="auto"`` takes Gram space in low precision only up to this many steps (the gate held up to 6).
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


def gram_iterate(X: torch.Tensor, triples: Sequence[tuple[float, float, float]],
                 restarts: Sequence[int] = ()) -> torch.Tensor:
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
