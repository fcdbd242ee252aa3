"""Slow, obviously-correct references for the fast Newton-Schulz paths (tests compare against these).

* :func:`svd_orthogonalize`: the exact polar factor ``U Vᵀ`` from a float64 SVD (also ``ns_method="svd"``).
* :func:`reference_ns`: Newton-Schulz on one 2-D matrix in float64, written without batching, buffers or
  fused ops: ``X₀ = G / (s·‖G‖_F)``, then ``X ← aX + b(XXᵀ)X + c(XXᵀ)²X`` per ``(a, b, c)`` of the schedule.
"""

from __future__ import annotations

import torch

from .coefficients import normalization_scale, schedule


def svd_orthogonalize(G: torch.Tensor, rcond: float = 1e-6) -> torch.Tensor:
    """Exact polar factor ``U Vᵀ`` (float64 SVD); singular values ≤ rcond·σ_max count as zero."""
    G64 = G.to(torch.float64)
    U, S, Vh = torch.linalg.svd(G64, full_matrices=False)
    keep = (S > rcond * S.amax(dim=-1, keepdim=True)) & (S > 0)
    return (U * keep.unsqueeze(-2).to(U.dtype)) @ Vh


def reference_ns(G: torch.Tensor, steps: int, coefficients="polar_express", eps: float | None = None) -> torch.Tensor:
    """Newton-Schulz on one 2-D matrix in float64, written without batching or fused ops."""
    X = G.to(torch.float64)
    transpose = X.shape[0] > X.shape[1]
    if transpose:
        X = X.T
    floor = torch.finfo(X.dtype).tiny if eps is None else eps
    X = X / max(float(torch.linalg.norm(X)) * normalization_scale(coefficients), floor)
    for a, b, c in schedule(coefficients, steps):
        A = X @ X.T
        X = a * X + b * (A @ X) + c * (A @ (A @ X))
    return X.T if transpose else X
