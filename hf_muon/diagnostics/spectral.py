"""Spectral diagnostics of weights and momenta (pure functions on tensors).

* SVD entropy (Moonlight, arXiv 2502.16982 §3.4): with ``p_i = σ_i² / Σ_j σ_j²``,
  ``H = −(1/log n) Σ p_i log p_i`` ∈ [0, 1]; 1 means a flat spectrum (all directions used).
* σ-quantiles of the Frobenius-normalised momentum ``M/‖M‖_F`` (Spectral Scaling Laws of Muon,
  arXiv 2606.04058): where the bulk of the spectrum sits relative to what Newton-Schulz can lift.
* Orthogonality error ``‖O Oᵀ − I‖_F / √m = RMS_i(σ_i(O)² − 1)`` (wide orientation, m = min side) of an
  orthogonalized update: 0 when exactly semi-orthogonal, 1 for a zero matrix; directions Newton-Schulz
  could not lift (tiny σ of the input) count fully. ``lifted_fraction`` gives the share with σ ≥ 0.5.
"""

from __future__ import annotations

import math

import torch

from ..model.layers import layer_info  # noqa: F401  (re-exported)

DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def matrices(t: torch.Tensor, experts: bool = False) -> torch.Tensor:
    """View a weight as a batch of matrices (..., m, n): 2-D as is, expert stacks per expert, conv flattened."""
    if t.ndim == 2 or (experts and t.ndim == 3):
        return t
    return t.reshape(t.shape[0], -1)


def singular_values(t: torch.Tensor, experts: bool = False) -> torch.Tensor:
    full = t.full_tensor() if hasattr(t, "full_tensor") else t
    return torch.linalg.svdvals(matrices(full.detach().float(), experts))


def svd_entropy(sv: torch.Tensor) -> float:
    """Normalised entropy of the squared singular values (mean over a batch of matrices)."""
    sv = sv.reshape(-1, sv.shape[-1]).double()
    n = sv.shape[-1]
    if n < 2:
        return 1.0
    p = sv**2 / (sv**2).sum(-1, keepdim=True).clamp_min(1e-300)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1) / math.log(n)
    return float(h.mean())


def normalized_quantiles(sv: torch.Tensor, quantiles=DEFAULT_QUANTILES) -> list[float]:
    """Quantiles of σ(M)/‖M‖_F (pooled over a batch of matrices)."""
    sv = sv.reshape(-1, sv.shape[-1]).double()
    fro = (sv**2).sum(-1, keepdim=True).sqrt().clamp_min(1e-300)
    return torch.quantile((sv / fro).flatten(), torch.tensor(quantiles, dtype=torch.float64)).tolist()


def orthogonality_error(O: torch.Tensor) -> float:
    """``‖O Oᵀ − I‖_F / √m`` (averaged in square over a batch): 0 for an exactly semi-orthogonal update."""
    sv = torch.linalg.svdvals(O.detach().double())
    return float((sv**2 - 1).pow(2).mean().sqrt())


def lifted_fraction(O: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of singular values of ``O`` at or above ``threshold``."""
    sv = torch.linalg.svdvals(O.detach().double())
    return float((sv >= threshold).double().mean())
