"""A slow, obviously-correct float64 reference of the Muon rule, one matrix at a time.

No batching, no in-place tricks, no dtype policy: the rule written out as in Moonlight (arXiv
2502.16982, Eq. 1 with Nesterov and Eq. 4), for tests to compare the fast optimizer against::

    B ← μ·B + G ;  U = G + μ·B (Nesterov) or B
    O = NS(U) (the same coefficient schedule, float64) or the exact U Vᵀ (SVD)
    W ← W·(1 − lr·λ) − lr·α(shape, mode)·O
"""

from __future__ import annotations

import torch

from ..ns.reference import reference_ns
from ..ns.scaling import fan_out_in, scale_factor


def reference_muon_step(
    weight: torch.Tensor,
    grad: torch.Tensor,
    buf: torch.Tensor,
    *,
    lr: float,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_steps: int = 5,
    coefficients="polar_express",
    scale_mode: str = "moonlight",
    transposed: bool = False,
    experts: bool = False,
    method: str = "newton_schulz",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step for one parameter; returns new (weight, buffer) in float64, inputs untouched."""
    W, G, B = (t.detach().to(torch.float64).clone() for t in (weight, grad, buf))
    B = momentum * B + G
    U = G + momentum * B if nesterov else B
    if U.ndim == 2:
        mats = [U]
    elif experts:
        mats = list(U)
    else:
        mats = [U.reshape(U.shape[0], -1)]
    outs = []
    for M in mats:
        if method == "svd":
            u, s, vh = torch.linalg.svd(M, full_matrices=False)
            outs.append(u @ vh)
        else:
            outs.append(reference_ns(M, ns_steps, coefficients))
    O = torch.stack(outs).reshape(U.shape) if experts else outs[0].reshape(U.shape)
    d_out, d_in = fan_out_in(W.shape, transposed, experts)
    alpha = scale_factor(d_out, d_in, scale_mode)
    W = W * (1 - lr * weight_decay) - lr * alpha * O
    return W, B
