"""AdaMuon (Si, Zhang, Shen, arXiv 2507.11005): orthogonalize the sign-stabilized momentum, normalize the result
element-wise by an EMA of its square, RMS-align to Adam's update size::

    O = NS(sign(U))                       (prepare: the sign before Newton-Schulz)
    V ← β2·V + (1 − β2)·O ⊙ O             one value per element (``adamuon_v``)
    Ô = O ⊘ (√V + ε)
    update = Ô·√min(m, n)/‖Ô‖_F, then × α  (moonlight α: the paper's γ = 0.2·√(mn)/‖Ô‖_F, update RMS 0.2·η)

U is the Nesterov mix (or the buffer) of the momentum rule; since NS normalizes its input, Muon's sum-form
buffer gives the same O as the paper's EMA. No bias correction on V (the paper's choice; a scalar per matrix,
removed by the rescale). The paper's second moment uses the momentum's β; here β2 = ``variant_beta2``,
default 0.95 = the default momentum. Extra state: one buffer the size of the weight.
"""

from __future__ import annotations

import torch

from . import matrices, rms_match, variant_state, work_dtype

KEY = "adamuon_v"


def prepare(group: dict, directions: list) -> list[torch.Tensor]:
    return [torch.sign(u) for u in directions]


def transform(group: dict, states: list[dict], params: list, ortho: list) -> list[torch.Tensor]:
    beta2, eps = group["variant_beta2"], group["variant_eps"]
    out = []
    for st, p, o in zip(states, params, matrices(group, ortho)):
        x = o.to(work_dtype(o))
        v = variant_state(st, KEY, x, group, p)
        v.mul_(beta2).addcmul_(x.to(v.dtype), x.to(v.dtype), value=1 - beta2)
        out.append(rms_match(x / (v.to(x.dtype).sqrt() + eps), group, p))
    return out


__all__ = ["KEY", "prepare", "transform"]
