"""Param-group validation: every knob a group carries goes through :func:`hf_muon.config.check` (the same
validators as :class:`hf_muon.MuonConfig`), plus the checks that need the group's tensors. Errors name the
group (``param_groups[i]``) and, for tensor checks, the parameter."""

from __future__ import annotations

import warnings

import torch

from ..config import GROUP_KNOBS, check
from ..ns.blocks import Split
from ..ns.coefficients import schedule
from ..ns.scaling import check_lr
from ..ns.schedule import DepthSchedule
from ..ns.tensors import FLAT_PARAM_HINT
from .screen import param_label


def check_matrix(g: dict, gi: int, i: int, p: torch.Tensor) -> None:
    if p.ndim < 2:
        raise ValueError(
            f"Muon group parameter {param_label(g, gi, i, p)} is {p.ndim}-D; Muon orthogonalizes matrices only. "
            "If it is a norm/bias/scalar, route it to AdamW (hf_muon.param_groups(model) does this). If it is a "
            f"flattened 2-D weight: {FLAT_PARAM_HINT}"
        )
    if g["experts"] and p.ndim != 3:
        raise ValueError(f"expert group parameter {param_label(g, gi, i, p)} must be 3-D (E, out, in)")


def validate_group(g: dict, gi: int) -> None:
    where = f"param_groups[{gi}]: "
    for name in GROUP_KNOBS:
        g[name] = check(name, g[name], where)
    if not g["use_muon"]:
        if g["fused"] and g["foreach"]:
            raise ValueError(f"{where}fused=True and foreach=True cannot be set together (as in torch.optim.AdamW)")
        if g["fused"] and g["differentiable"]:
            raise ValueError(f"{where}fused=True does not support differentiable=True")
        return
    if g["cautious_wd"] and g["weight_decay"] == 0 and g["params"]:
        warnings.warn(
            f"{where}cautious_wd=True with weight_decay=0 changes nothing: cautious decay masks the decay, "
            "and there is none (set weight_decay > 0, e.g. --weight_decay 0.1, or drop cautious_wd)",
            UserWarning,
            stacklevel=6,
        )
    steps = g["ns_steps"]
    if isinstance(steps, (DepthSchedule, dict)):
        raise ValueError(
            f"{where}ns_steps={steps!r} is a per-layer schedule; it is resolved per parameter by "
            "hf_muon.param_groups(model, ns_steps=...) / create_optimizer, not inside a group"
        )
    if steps == "auto" and g["auto_min"] > g["auto_max"]:
        raise ValueError(f"{where}auto_min={g['auto_min']} > auto_max={g['auto_max']}")
    schedule(g["coefficients"], g["auto_max"] if steps == "auto" else steps)
    check_lr(g["lr"], g["scale_mode"], stacklevel=6)
    split = Split.from_spec(g["split"])
    for i, p in enumerate(g["params"]):
        check_matrix(g, gi, i, p)
        if split is not None:
            split.check(p.shape, param_label(g, gi, i, p))


__all__ = ["GROUP_KNOBS", "check_matrix", "validate_group"]
