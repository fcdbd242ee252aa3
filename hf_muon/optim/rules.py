"""Direction rules: what a Muon group orthogonalizes, as pure functions over (state, params, grads).

A rule takes the group's hyperparameters, the per-parameter state dicts and the gradients, updates the
state in place, and returns one tensor per parameter to orthogonalize (``tag``: where it may keep them in
workspace scratch for the rest of the step). The optimizer picks the rule by the
group's ``update_base`` from :data:`RULES`; a new rule is a function plus a registry entry.

``momentum`` (Muon; Moonlight Eq. 1 with Keller's Nesterov variant, arXiv 2502.16982)::

    B ← μ·B + G                      (SGD-style buffer: a sum, not an EMA)
    U = G + μ·B   (Nesterov)   or   U = B

Why the sum and not the EMA ``B ← μB + (1−μ)G`` of Keller / ``torch.optim.Muon``: after Frobenius
normalisation both give the same direction (the EMA is the sum times ``1 − μ``), so Muon is unaffected; the
sum keeps the buffer at gradient scale, which the spectral family's ``p > 0`` members (momentum-SGD at
p = 1) and the diagnostics' momentum σ-quantiles are defined on.

``adam`` (the Adam family of the spectral family, arXiv 2602.04669): Adam's bias-corrected
``m̂/(√v̂ + ε)`` with ``m ← β1·m + (1−β1)·G``, ``v ← β2·v + (1−β2)·G²``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..ns.workspace import scratch
from . import state as S
from .jobs import is_dtensor


def momentum_(
    bufs: list[torch.Tensor], grads: list[torch.Tensor], momentum: float, nesterov: bool, tag: str | None = None
) -> list[torch.Tensor]:
    """``B ← μB + G`` in place; return the tensors to orthogonalize (``G + μB`` or ``B``).

    One pass per tensor for each formula (``torch.add(G, B, alpha=μ)``, written into ``B`` for the buffer), not
    ``B·μ`` then ``+ G`` (two passes over the buffer). With ``tag``, each Nesterov mix is written into workspace
    scratch ``f"{tag}.{i}"`` (CPU, plain tensors; :mod:`hf_muon.ns.workspace`), valid until the next call with
    that tag: the optimizer consumes it within the step, and no fresh direction is paged in each step."""
    if not bufs:
        return []
    for b, g in zip(bufs, grads):
        torch.add(g, b, alpha=momentum, out=b)
    if not nesterov:
        return list(bufs)
    out = []
    for i, (b, g) in enumerate(zip(bufs, grads)):
        g = g.to(b.dtype) if g.dtype != b.dtype else g  # the mix in the buffer's dtype (fp32 for bf16 params)
        if tag is None or is_dtensor(b):
            out.append(torch.add(g, b, alpha=momentum))
        else:
            out.append(torch.add(g, b, alpha=momentum, out=scratch(f"{tag}.{i}", b.shape, b.dtype, b.device)))
    return out


def momentum_rule(
    group: dict, states: list[dict], params: list, grads: list, tag: str | None = None
) -> list[torch.Tensor]:
    bufs = [S.momentum_buffer(st, p, group) for st, p in zip(states, params)]
    return momentum_(bufs, grads, group["momentum"], group["nesterov"], tag)


def adam_rule(group: dict, states: list[dict], params: list, grads: list, tag: str | None = None) -> list[torch.Tensor]:
    beta1, beta2 = group["betas"]
    out = []
    for st, p, g in zip(states, params, grads):
        m, v, step = S.adam_moments(st, p)
        step += 1
        t = float(step)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        # in at least fp32: Adam's ε (1e-8) is 0 in fp16, and 0/0 is NaN for a zero gradient
        work = torch.promote_types(v.dtype, torch.float32)
        denom = (v.to(work) / (1 - beta2**t)).sqrt_().add_(group["eps"])
        out.append(m.to(work) / (1 - beta1**t) / denom)
    return out


Rule = Callable[[dict, list, list, list], list]
RULES: dict[str, Rule] = {"momentum": momentum_rule, "adam": adam_rule}

__all__ = ["RULES", "adam_rule", "momentum_", "momentum_rule"]
