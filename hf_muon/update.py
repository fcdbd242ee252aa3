"""Muon's update rule as pure, in-place tensor functions (no optimizer state of their own).

Momentum form (Moonlight Eq. 1 with Keller's Nesterov variant, footnote 1 of arXiv 2502.16982)::

    B ← μ·B + G                      (SGD-style buffer: a sum, not an EMA)
    U = G + μ·B   (Nesterov)   or   U = B
    O = orthogonalize(U)
    W ← W·(1 − lr·λ) − lr·α·O        (decoupled weight decay, then the scaled orthogonal update)

Why the SGD-style sum and not the EMA ``B ← μB + (1−μ)G`` of Keller / ``torch.optim.Muon``: after
Frobenius normalisation the two give the same direction (the EMA is the sum times ``1 − μ``, the Nesterov
mix too), so Muon itself is unaffected; but the sum keeps the buffer at gradient scale, which is what
the spectral family's ``p > 0`` members (momentum-SGD at p = 1) and the diagnostics' momentum
σ-quantiles are defined on, and it is the form the Moonlight paper writes down.

Weight decay lives here, in one place (``decoupled_decay_``), and uses the *plain* lr, not lr·α
(Moonlight's toy code, ``p.mul_(1 - lr·wd)``): the decay does not depend on the scale mode.
"""

from __future__ import annotations

import torch


def momentum_(bufs: list[torch.Tensor], grads: list[torch.Tensor], momentum: float, nesterov: bool) -> list[torch.Tensor]:
    """``B ← μB + G`` in place; return the tensors to orthogonalize (``G + μB`` or ``B``)."""
    if not bufs:
        return []
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)
    if nesterov:
        # G + μ·B, in the buffer's dtype (fp32 buffers for bf16 params keep the mix in fp32).
        return [b.mul(momentum).add_(g) for b, g in zip(bufs, grads)]
    return list(bufs)


def decoupled_decay_(params: list[torch.Tensor], lr: float, weight_decay: float) -> None:
    """``W ← W·(1 − lr·λ)``; a no-op when lr·λ = 0 (so an lr = 0 step leaves weights bit-identical)."""
    if params and lr * weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)


def apply_orthogonal_(params: list[torch.Tensor], updates: list[torch.Tensor], lr: float, scales: list[float]) -> None:
    """``W ← W − lr·α·O`` per parameter (``updates`` may be scaled in place); no-op at lr = 0."""
    if not params or lr == 0.0:
        return
    for p, o, s in zip(params, updates, scales):
        p.add_(o.reshape(p.shape), alpha=-lr * s)
