"""The optimizer's per-parameter state: its layout and its dtype policy, in one place.

Layout (every value a tensor, so ``state_dict()`` loads with ``torch.load(weights_only=True)``):

===============  ===============================  ======================================================
group kind       keys                              dtype
===============  ===============================  ======================================================
Muon, momentum   ``momentum_buffer``               the parameter's, or float32 with ``momentum_dtype``
Muon, adam base  ``exp_avg``, ``exp_avg_sq``,       the parameter's; ``step`` a float scalar
                 ``step``
Muon, auto NS    ``ns_steps``                      int64 (the step count chosen for this matrix)
NorMuon          + ``normuon_v``: one value per    as ``momentum_buffer`` (float32 with ``momentum_dtype``)
                 output neuron, ``(…, m, 1)``
                 (``(…, 1, n)`` transposed)
AdaMuon          + ``adamuon_v``: the matrix view   as ``momentum_buffer``
                 of the weight, one per element
AdamW            ``exp_avg``, ``exp_avg_sq``,       as ``torch.optim.AdamW`` (bit-identical layout)
                 ``step``
===============  ===============================  ======================================================

``torch.optim.Optimizer.load_state_dict`` casts every floating (and integer) state tensor to the parameter's
dtype. For Muon groups that would turn a bf16 parameter's fp32 momentum into bf16 (precision lost for good)
and ``ns_steps`` into a float. :func:`install` registers load hooks that put back, from the *saved* tensors,
the dtype this policy prescribes (:func:`policy_dtype`; NorMuon/AdaMuon second moments follow the momentum's);
AdamW groups keep torch's behaviour.
"""

from __future__ import annotations

import torch

from ..ns.tensors import is_dtensor
from .screen import label_of

MOMENTUM = "momentum_buffer"
INT_KEYS = ("ns_steps",)


def momentum_policy_keys() -> tuple[str, ...]:
    """State keys kept in ``momentum_dtype`` through ``load_state_dict``: the buffer and each variant's own key
    (declared by the variant, :data:`hf_muon.optim.variants.STATE_KEYS`; imported here late, the variants import
    this module)."""
    from .variants import STATE_KEYS

    return (MOMENTUM, *STATE_KEYS)


def scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def momentum_dtype(group: dict, p: torch.Tensor) -> torch.dtype:
    return torch.float32 if group.get("momentum_dtype") == "float32" else p.dtype


def momentum_buffer(st: dict, p: torch.Tensor, group: dict) -> torch.Tensor:
    if MOMENTUM not in st:
        st[MOMENTUM] = torch.zeros_like(p, dtype=momentum_dtype(group, p), memory_format=torch.preserve_format)
    return st[MOMENTUM]


def adam_moments(st: dict, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if "exp_avg" not in st:
        st["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return st["exp_avg"], st["exp_avg_sq"], st["step"]


def adamw_state(st: dict, p: torch.Tensor, on_device: bool) -> dict:
    """AdamW state as torch creates it; the fused kernel keeps ``step`` beside the parameter."""
    if len(st) == 0:
        st["step"] = (
            torch.zeros((), dtype=torch.float32, device=p.device)
            if on_device
            else torch.tensor(0.0, dtype=scalar_dtype())
        )
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    elif on_device and st["step"].device != p.device:
        # a state loaded from an unfused run or from another device has the count on the CPU
        st["step"] = st["step"].to(device=p.device, dtype=torch.float32)
    return st


def policy_dtype(group: dict, key: str, p: torch.Tensor, saved: torch.Tensor) -> torch.dtype | None:
    """The dtype a loaded Muon-group state tensor must have (None: leave torch's cast alone)."""
    if not group.get("use_muon", True):
        return None
    if key in INT_KEYS:
        return torch.int64
    if key in momentum_policy_keys():
        return momentum_dtype(group, p)
    return None


def _param_order(param_groups: list[dict]) -> list[tuple[dict, torch.Tensor]]:
    return [(g, p) for g in param_groups for p in g["params"]]


def _where(param_groups: list[dict], p: torch.Tensor) -> str:
    for gi, g in enumerate(param_groups):
        if any(q is p for q in g["params"]):
            return label_of(g, gi, p)
    return f"shape {tuple(p.shape)}"  # pragma: no cover


def check_finite(param_groups: list[dict], p: torch.Tensor, key: str, value: torch.Tensor) -> None:
    """Refuse a saved state tensor holding NaN/±inf: every later step of that parameter would be refused, so
    it is named at load time (one pass over the state, at load only)."""
    local = value.to_local() if is_dtensor(value) else value
    if local.is_floating_point() and not bool(torch.isfinite(local).all()):
        raise ValueError(
            f"load_state_dict: state {key!r} of {_where(param_groups, p)} holds NaN or ±inf; nothing was loaded. "
            "Load an earlier checkpoint, or drop that parameter's state to restart its moments."
        )


def install(optimizer: torch.optim.Optimizer) -> None:
    """Keep the state policy through ``load_state_dict`` (see the module docstring)."""
    pending: dict = {}

    def pre(opt, state_dict):
        pending.clear()
        saved_ids = [pid for g in state_dict.get("param_groups", []) for pid in g["params"]]
        state = state_dict.get("state", {})
        for pid, (group, p) in zip(saved_ids, _param_order(opt.param_groups)):
            for key, value in (state.get(pid) or {}).items():
                if isinstance(value, torch.Tensor):
                    check_finite(opt.param_groups, p, key, value)
                    dtype = policy_dtype(group, key, p, value)
                    if dtype is not None and dtype != p.dtype:
                        pending[(id(p), key)] = (p, value, dtype)
        return None

    def post(opt):
        for (_, key), (p, value, dtype) in pending.items():
            opt.state[p][key] = value.to(device=p.device, dtype=dtype, copy=True)
        pending.clear()

    optimizer.register_load_state_dict_pre_hook(pre)
    optimizer.register_load_state_dict_post_hook(post)


__all__ = [
    "MOMENTUM",
    "momentum_policy_keys",
    "adam_moments",
    "adamw_state",
    "install",
    "momentum_buffer",
    "policy_dtype",
]
