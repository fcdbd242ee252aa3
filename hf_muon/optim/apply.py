"""Applying an orthogonalized update: scale, decoupled weight decay, the write.

::

    W ← W·(1 − lr·λ) − lr·α·O

With ``cautious_wd=True`` the decay is masked: ``W ← W − lr·λ·(W ⊙ [O ⊙ W ≥ 0])``, only the coordinates where
the update ``−O`` and the decay ``−W`` point the same way (a modded-nanogpt record; dion's ``cautious_wd`` mask
``sign(W·O) ≥ 0``: an exact zero counts as agreeing). The mask is taken on the weight *before* the write.

``α`` is the group's scale mode for the parameter's shape and orientation (:mod:`hf_muon.ns.scaling`;
moonlight: ``0.2·√max(A, B)``, Moonlight Eq. 4). Weight decay uses the *plain* lr, not ``lr·α`` (Moonlight's
code, ``p.mul_(1 − lr·wd)``), so it does not depend on the scale mode. Both are exact no-ops at lr = 0.
For a fused projection orthogonalized block by block, each block's scale relative to the whole matrix's is
applied when the blocks are assembled (:func:`block_ratios`), so one α per parameter remains here.

Eager on purpose for cautious decay and small matrices: compiling decay + write pays per-call guards that
outweigh the saved pass there (benchmarks/RESULTS.md); large fp32 matrices get the compiled one-pass write
(:func:`hf_muon.ns.kernels.decay_add_`).
"""

from __future__ import annotations

import functools

import torch

from ..ns.blocks import Split
from ..ns.kernels import decay_add_, one_pass_write
from ..ns.scaling import fan_out_in, scale_factor


def update_scale(p: torch.Tensor, group: dict) -> float:
    """α for this parameter under its group's scale mode (orientation-aware)."""
    d_out, d_in = fan_out_in(p.shape, group["transposed"], group["experts"])
    return scale_factor(d_out, d_in, group["scale_mode"])


@functools.lru_cache(maxsize=256)
def block_ratios(shape: tuple, split: Split, transposed: bool, experts: bool, mode: str) -> tuple[float, ...]:
    """Each block's scale factor over the whole fused matrix's (moonlight: √(max dims of block / of whole))."""
    whole = scale_factor(*fan_out_in(shape, transposed, experts), mode)
    return tuple(scale_factor(*fan_out_in(b, transposed, experts), mode) / whole for b in split.block_shapes(shape))


def decoupled_decay_(params: list[torch.Tensor], lr: float, weight_decay: float) -> None:
    """``W ← W·(1 − lr·λ)``; a no-op when lr·λ = 0 (so an lr = 0 step leaves weights bit-identical)."""
    if params and lr * weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)


def cautious_decay_(params: list[torch.Tensor], updates: list[torch.Tensor], lr: float, weight_decay: float) -> None:
    """``W ← W − lr·λ·W`` where ``O·W ≥ 0``; a no-op when lr·λ = 0."""
    if not params or lr * weight_decay == 0.0:
        return
    for p, o in zip(params, updates):
        agree = ((o.reshape(p.shape) * p) >= 0).to(p.dtype)
        p.addcmul_(p, agree, value=-lr * weight_decay)


def apply_orthogonal_(params: list[torch.Tensor], updates: list[torch.Tensor], lr: float, scales: list[float]) -> None:
    """``W ← W − lr·α·O`` per parameter; no-op at lr = 0."""
    if not params or lr == 0.0:
        return
    for p, o, s in zip(params, updates, scales):
        p.add_(o.reshape(p.shape), alpha=-lr * s)


def apply_group(group: dict, params: list[torch.Tensor], ortho: list[torch.Tensor]) -> list[float]:
    """Decay then write one Muon group's updates; returns the scales used (for diagnostics).

    With plain decay, a parameter the compiled write takes (:func:`hf_muon.ns.kernels.one_pass_write`) gets
    ``W ← (1 − lr·λ)·W − lr·α·O`` in one pass; the others get the two eager passes. Cautious decay is eager."""
    scales = [update_scale(p, group) for p in params]
    lr, wd = group["lr"], group["weight_decay"]
    if group["cautious_wd"]:
        cautious_decay_(params, ortho, lr, wd)
        apply_orthogonal_(params, ortho, lr, scales)
        return scales
    rest = []
    for p, o, s in zip(params, ortho, scales):
        if lr != 0.0 and one_pass_write(p, group["kernels"]):
            decay_add_(p, o, 1.0 - lr * wd, -lr * s, group["kernels"])
        else:
            rest.append((p, o, s))
    if rest:
        params, ortho, scales_rest = (list(t) for t in zip(*rest))
        decoupled_decay_(params, lr, wd)
        apply_orthogonal_(params, ortho, lr, scales_rest)
    return scales


__all__ = ["apply_group", "apply_orthogonal_", "block_ratios", "cautious_decay_", "decoupled_decay_", "update_scale"]
