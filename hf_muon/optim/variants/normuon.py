"""NorMuon (Li et al., arXiv 2510.05491, Algorithm 1): Muon's orthogonalized momentum, each output neuron's row
divided by the root of an EMA of its mean squared update, then RMS-matched::

    O = NS(U)
    v ← β2·v + (1 − β2)·mean_cols(O ⊙ O)        one value per output neuron (``normuon_v``)
    Ô = O ⊘ (√v + ε)                            (v broadcast over the row)
    update = Ô·√min(m, n)/‖Ô‖_F, then × α        (moonlight α: the paper's η̂ = 0.2·η·√(mn)/‖Ô‖_F)

No bias correction on v (as in the paper and its code: a scalar per matrix, removed by the rescale). The
official code and dion keep ‖Ô‖_F = ‖O‖_F instead of √min(m, n); the two agree when O is orthogonal and differ
by NS's residual (a few % with 5 Polar Express steps). β2 = ``variant_beta2`` (paper: 0.95), ε = ``variant_eps``.
"""

from __future__ import annotations

import torch

from . import matrices, neuron_dim, rms_match, variant_state, work_dtype

KEY = "normuon_v"


def transform(group: dict, states: list[dict], params: list, ortho: list) -> list[torch.Tensor]:
    beta2, eps, dim = group["variant_beta2"], group["variant_eps"], neuron_dim(group)
    out = []
    for st, p, o in zip(states, params, matrices(group, ortho)):
        x = o.to(work_dtype(o))
        row_sq = x.square().mean(dim=dim, keepdim=True)
        v = variant_state(st, KEY, row_sq, group, p)
        v.mul_(beta2).add_(row_sq.to(v.dtype), alpha=1 - beta2)
        out.append(rms_match(x / (v.to(x.dtype).sqrt() + eps), group, p))
    return out


__all__ = ["KEY", "transform"]
