"""The spectral family ``Ψ_p(X) = U Σ^p Vᵀ`` for ``X = U Σ Vᵀ`` and ``p ∈ [0, 1]``.

Qi, Chen, Ye, He & Xiao, *Delving into Muon and Beyond* (arXiv 2602.04669): ``p = 0`` is Muon's
orthogonalization (mSGDZ / AdamZ), ``p = ¼`` mSGDQ / AdamQ, ``p = ½`` mSGDS / AdamS, ``p = 1`` the input
itself (momentum-SGD / Adam). Applied to the momentum, or to Adam's RMS-normalised update ``m̂/√v̂``.

Computation:

* ``p = 0``: Newton-Schulz (:func:`hf_muon.ns.newton_schulz.newton_schulz`).
* ``p = 1``: the identity.
* ``p = ½``: ``Ψ_½(X) = (XXᵀ)^{-1/4} X`` (wide orientation, so the Gram matrix is the small side).
  ``G^{-1/4}`` comes from two coupled Newton-Schulz square-root iterations (``Y → A^{1/2}``,
  ``Z → A^{-1/2}`` with ``T = (3I − ZY)/2; Y ← YT; Z ← TZ``): the first gives ``G^{1/2}``, the second,
  run on ``G^{1/2}``, gives ``G^{-1/4}``. Each input is scaled by its Frobenius norm (eigenvalues in
  (0, 1]) and regularised by ``δ·I`` so directions with σ → 0 stay bounded.
* ``p = ¼``: ``Ψ_½(Ψ_½(X))``.
* any other ``p``: the exact SVD (also the reference for the fast paths).

The coupled iteration converges for eigenvalues in (0, 3) but slowly for tiny ones (×1.5 per step),
so directions with ``σ² ≲ δ·‖XXᵀ‖_F`` are damped: that is the regularisation, not an error.
"""

from __future__ import annotations

import torch

FAST_POWERS = (0.0, 0.25, 0.5, 1.0)


def svd_power(X: torch.Tensor, p: float) -> torch.Tensor:
    """Exact ``U Σ^p Vᵀ`` in float64 (``0^0`` taken as 0, as Newton-Schulz maps exact zeros to 0)."""
    U, S, Vh = torch.linalg.svd(X.to(torch.float64), full_matrices=False)
    if p == 0:
        Sp = (S > 1e-12 * S.amax(dim=-1, keepdim=True).clamp_min(1e-300)).to(S.dtype)
    else:
        Sp = S.pow(p)
    return (U * Sp.unsqueeze(-2)) @ Vh


def _coupled_sqrt(A: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A^{1/2}, A^{-1/2}) for symmetric positive A with eigenvalues in (0, 1]."""
    eye = torch.eye(A.size(-1), dtype=A.dtype, device=A.device).expand_as(A)
    Y, Z = A, eye.clone()
    for _ in range(iters):
        T = 0.5 * (3.0 * eye - Z @ Y)
        Y, Z = Y @ T, T @ Z
        Y, Z = 0.5 * (Y + Y.mT), 0.5 * (Z + Z.mT)  # keep symmetric against round-off drift
    return Y, Z


def _inverse_fourth_root(G: torch.Tensor, iters: int, delta: float) -> torch.Tensor:
    """``(G + δ‖G‖_F I)^{-1/4}`` for a batch of symmetric PSD matrices.

    ``G/‖G‖_F`` has eigenvalues in [0, 1]; adding ``δ`` keeps the smallest above the round-off floor
    (negative round-off eigenvalues would make the coupled iteration diverge).
    """
    eye = torch.eye(G.size(-1), dtype=G.dtype, device=G.device)
    c1 = torch.linalg.matrix_norm(G, ord="fro", keepdim=True).clamp_min(torch.finfo(G.dtype).tiny)
    S, _ = _coupled_sqrt(G / c1 + delta * eye, iters)  # ≈ (G/c1 + δI)^{1/2}
    c2 = torch.linalg.matrix_norm(S, ord="fro", keepdim=True)
    _, W = _coupled_sqrt(S / c2, iters)  # (S/c2)^{-1/2}
    return W * c2.rsqrt() * c1.pow(-0.25)


def half_power(X: torch.Tensor, iters: int = 25, delta: float | None = None) -> torch.Tensor:
    """``U Σ^{1/2} Vᵀ`` by coupled Newton-Schulz (no SVD); ``X`` is ``(..., m, n)``.

    ``delta`` (default 1e-6 in fp32, 1e-12 in fp64) regularises ``G/‖G‖_F``: directions with
    ``σ² ≲ δ·‖G‖_F`` are damped toward 0 instead of amplified. Zero matrices map to zeros.
    """
    if delta is None:
        delta = 1e-12 if X.dtype == torch.float64 else 1e-6
    tall = X.size(-2) > X.size(-1)
    W = X.mT if tall else X
    G = W @ W.mT
    out = _inverse_fourth_root(G, iters, delta) @ W
    return out.mT if tall else out


def spectral_power(
    X: torch.Tensor,
    p: float,
    method: str = "auto",
    steps: int = 5,
    coefficients="polar_express",
    iters: int = 25,
    delta: float | None = None,
) -> torch.Tensor:
    """``Ψ_p(X) = U Σ^p Vᵀ``. ``method="auto"`` uses the fast path for p ∈ {0, ¼, ½, 1}, else SVD."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"spectral_power p must be in [0, 1], got {p}")
    if method == "svd" or (method == "auto" and p not in FAST_POWERS):
        return svd_power(X, p).to(X.dtype)
    if method not in ("auto", "newton"):
        raise ValueError(f"unknown spectral_power method {method!r}; valid: auto, newton, svd")
    if p == 1.0:
        return X
    if p == 0.0:
        from .newton_schulz import newton_schulz

        return newton_schulz(
            X, steps=steps, coefficients=coefficients, dtype="float32" if X.dtype != torch.float64 else "float64"
        )
    if p not in (0.25, 0.5):
        raise ValueError(f"the Newton path covers p in {FAST_POWERS}; use method='svd' for p={p}")
    dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    # Ψ_p(cX) = c^p Ψ_p(X): iterate on X/max|X| so the Gram matrix XXᵀ cannot overflow for huge finite X
    amax = torch.linalg.vector_norm(X, ord=float("inf"), dim=(-2, -1), keepdim=True, dtype=dtype)
    c = amax.clamp_min(torch.finfo(dtype).tiny)
    Y = half_power(X.to(dtype) / c, iters, delta)
    if p == 0.25:
        Y = half_power(Y, iters, delta)
    return Y * c.pow(p)
