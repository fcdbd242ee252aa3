"""The in-step guard: a direction rule never leaves a non-finite state or direction behind without a word.

A finite gradient can still overflow inside the step: the momentum buffer ``B ← μB + G`` and the Nesterov mix
``G + μB`` in the buffer's dtype, or Adam's ``v ← β2·v + (1 − β2)·G²``. With ``B`` finite (``|B| ≤ M``, the dtype's
largest value) neither overflows while ``|G| ≤ (1 − μ)·M/2`` (then ``|μB + G| ≤ μM + |G| < M`` and
``|G + μB'| ≤ (1 + μ)|G| + μ²M < M``), nor Adam's ``v`` while ``|G| ≤ √M/4``. The screen already measured
``max |G|`` for every gradient, so the guard costs nothing for the parameters under their limit; the
rare ones over it (:func:`risky`) have their state copied, their rule run first and checked exactly. A non-finite
result either raises, after restoring every state it touched, before any counter, state or weight of the step
is written (``nonfinite="error"``), or drops the parameter from the step with its state restored and counts it
in ``nonfinite_skipped`` (``nonfinite="skip"``): the gradient screen's contract.

Sharded (DTensor) parameters: each rank checks its own shards, so the verdicts are agreed over the mesh (the
screen's agreement, one ``all_reduce`` per mesh dim) before any rank raises or drops one; every rank of the mesh
holds the same risky list (the sizes are agreed), so all take it. Cost: only in steps with a risky parameter.
"""

from __future__ import annotations

import math

import torch

from ..ns.tensors import is_dtensor
from .rules import RULES
from .screen import Work, agree_flags, label_of
from .state import momentum_dtype

STAGES = {
    "momentum": "momentum (B ← μB + G and the Nesterov mix G + μB)",
    "adam": "adam moments (v ← β2·v + (1 − β2)·G²)",
}


def limit(group: dict, p: torch.Tensor) -> float:
    """The gradient size under which the group's rule cannot overflow (see the module docstring)."""
    if group["update_base"] == "adam":
        return math.sqrt(torch.finfo(p.dtype).max) / 4
    return (1.0 - group["momentum"]) * torch.finfo(momentum_dtype(group, p)).max / 2


def risky(work: Work) -> list[int]:
    """Indices (into ``work.params``) of Muon parameters whose gradient is over the rule's limit."""
    if not work.group["use_muon"]:
        return []
    return [k for k, (p, size) in enumerate(zip(work.params, work.size)) if size > limit(work.group, p)]


def _snapshot(st: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}


def _restore(st: dict, saved: dict) -> None:
    st.clear()
    st.update(saved)


def _finite(direction: torch.Tensor, st: dict) -> bool:
    """This rank's verdict (its local shards of a DTensor's direction and state)."""
    tensors = [direction] + [v for v in st.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return all(bool(torch.isfinite(t.to_local() if is_dtensor(t) else t).all()) for t in tensors)


def _verdicts(directions: list, states: list, params: list) -> list[bool]:
    """Finite or not, per parameter; for DTensor parameters agreed over their mesh (all ranks take it)."""
    ok = [_finite(d, st) for d, st in zip(directions, states)]
    mesh = next((p.device_mesh for p in params if is_dtensor(p)), None)
    if mesh is None:
        return ok
    bad = agree_flags(torch.tensor([float(not f) for f in ok], device=params[0].to_local().device), mesh)
    return [not b for b in bad.tolist()]


def early_directions(state: dict, work: list[Work]) -> dict[int, torch.Tensor]:
    """Run the rule of every risky parameter of the step (before anything else is written) and check it.

    Returns ``{id(param): direction}`` for the risky parameters that passed; those that failed are dropped from
    their ``Work`` and counted (``nonfinite="skip"``), or every touched state is restored and the error raised."""
    out: dict[int, torch.Tensor] = {}
    touched: list[tuple[dict, dict]] = []
    for w in work:
        idx = risky(w)
        if not idx:
            continue
        g = w.group
        params, grads = [w.params[k] for k in idx], [w.grads[k] for k in idx]
        states = [state[p] for p in params]
        saved = [_snapshot(st) for st in states]
        touched += zip(states, saved)
        directions = RULES[g["update_base"]](g, states, params, grads, tag=None)
        drop = set()
        for k, p, st, sv, d, fine in zip(idx, params, states, saved, directions, _verdicts(directions, states, params)):
            if fine:
                out[id(p)] = d
                continue
            if g["nonfinite"] == "error":
                for t, s in touched:
                    _restore(t, s)
                raise FloatingPointError(
                    f"non-finite {STAGES[g['update_base']]} for {label_of(g, w.index, p)} at optimizer step "
                    f"{g['step'] + 1}: its finite gradient (max |g| = {w.size[k]:.3g}) overflows "
                    f"{momentum_dtype(g, p) if g['update_base'] == 'momentum' else p.dtype} there; nothing was "
                    "updated. Lower the lr, enable gradient clipping, use momentum_dtype='float32' for low-precision "
                    "parameters, or pass nonfinite='skip' to skip and count such updates."
                )
            _restore(st, sv)
            drop.add(k)
        if drop:
            keep = [k for k in range(len(w.params)) if k not in drop]
            w.params, w.grads, w.size = ([seq[k] for k in keep] for seq in (w.params, w.grads, w.size))
            w.skipped += len(drop)
    return out


def directions(group: dict, states: list, params: list, grads: list, early: dict, tag: str) -> list[torch.Tensor]:
    """The rule's directions for one group's parameters, taking the risky ones already computed from ``early``."""
    if not early or not any(id(p) in early for p in params):
        return RULES[group["update_base"]](group, states, params, grads, tag=tag)
    rest = [k for k, p in enumerate(params) if id(p) not in early]
    computed = RULES[group["update_base"]](
        group, [states[k] for k in rest], [params[k] for k in rest], [grads[k] for k in rest], tag=tag
    )
    out = [early.get(id(p)) for p in params]
    for k, d in zip(rest, computed):
        out[k] = d
    return out


__all__ = ["STAGES", "directions", "early_directions", "limit", "risky"]
