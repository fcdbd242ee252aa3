"""The pretraining optimizer state saved with each base, and Muon's momentum warm-started from AdamW's.

:func:`save_optimizer_state` writes ``optimizer_state.pt`` beside a base: ``{"param_names": [...],
"state_dict": optimizer.state_dict()}``, where ``param_names[i]`` is the model's name of the parameter the state
dict calls ``i`` (the optimizer's flattened group order). Tensors, strings and numbers only: it loads with
``torch.load(weights_only=True)``.

:func:`warm_start_momentum` is remedy (c): for every parameter in a Muon group (``use_muon``) of a fresh
:class:`hf_muon.Muon`, its buffer ``momentum_buffer`` is set from the base's AdamW first moment of the parameter
with the same name. AdamW keeps an EMA ``m ← β₁m + (1−β₁)g`` (gradient scale), while hf_muon's buffer is the sum
``B ← μB + g`` (Moonlight Eq. 1; steady state ``g/(1−μ)``), so the moment is rescaled to the sum form:

    B₀ = m / (1 − μ)        μ: the group's ``momentum`` (0.95)

Newton-Schulz normalises the direction, so the scale only sets how much the first SFT steps lean on the
pretraining momentum (B₁ = μB₀ + g₁) relative to a buffer built from SFT gradients alone. AdamW-routed
parameters (embeddings, norms) start fresh, as in every other arm. A state loaded later by
``load_state_dict`` (a checkpoint resume) replaces the warm start, so a resumed run continues exactly.
"""

from __future__ import annotations

from pathlib import Path

STATE_FILE = "optimizer_state.pt"
MOMENTUM = "momentum_buffer"  # hf_muon.optim.state.MOMENTUM: Muon's buffer key in optimizer.state[p]


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


def _names(model) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def save_optimizer_state(optimizer, model, path: str | Path) -> Path:
    """Write the optimizer's state dict with the parameter names (module docstring)."""
    import torch

    opt = _inner(optimizer)
    names = _names(model)
    order = [names.get(id(p), f"<unnamed {i}>") for i, p in enumerate(p for g in opt.param_groups for p in g["params"])]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"param_names": order, "state_dict": opt.state_dict()}, path)
    return path


def load_first_moments(path: str | Path) -> dict:
    """``{parameter name: exp_avg}`` from a saved optimizer state (``weights_only=True``)."""
    import torch

    saved = torch.load(Path(path), weights_only=True, map_location="cpu")
    names, state = saved["param_names"], saved["state_dict"]["state"]
    moments = {names[i]: st["exp_avg"] for i, st in state.items() if "exp_avg" in st}
    if not moments:
        raise ValueError(f"{path}: no exp_avg in the saved optimizer state (was the base trained with AdamW?)")
    return moments


def warm_start_momentum(optimizer, model, moments: dict) -> int:
    """Set Muon's ``momentum_buffer`` of each Muon-group parameter to ``m / (1 − μ)``; returns how many were set.

    Raises naming the parameter when a moment is missing or has another shape."""
    import torch

    opt = _inner(optimizer)
    names = _names(model)
    count = 0
    for g in opt.param_groups:
        if not g.get("use_muon"):
            continue
        mu = float(g["momentum"])
        for p in g["params"]:
            name = names.get(id(p))
            m = moments.get(name)
            if m is None:
                raise KeyError(f"warm start: no saved exp_avg for Muon parameter {name!r}")
            if tuple(m.shape) != tuple(p.shape):
                raise ValueError(f"warm start: {name}: saved exp_avg {tuple(m.shape)} vs parameter {tuple(p.shape)}")
            dtype = torch.float32 if g.get("momentum_dtype") == "float32" else p.dtype  # hf_muon's policy
            opt.state[p][MOMENTUM] = (m.to(device=p.device, dtype=torch.float64) / (1.0 - mu)).to(dtype)
            count += 1
    if count == 0:
        raise ValueError("warm start: the optimizer has no Muon group (optim must be muon)")
    return count


__all__ = ["MOMENTUM", "STATE_FILE", "load_first_moments", "save_optimizer_state", "warm_start_momentum"]
