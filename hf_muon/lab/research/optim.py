"""The recipes' optimizer: :func:`build_optimizer` (through :func:`hf_muon.create_optimizer`) and :func:`muon_params`."""

from __future__ import annotations

import torch

from .config import AUTO_KEYS, OPTIM_DEFAULTS, merge_config


def build_optimizer(model, cfg: dict):
    """The plugin's one builder, :func:`hf_muon.create_optimizer`, from the ``optimizer`` section (see
    ``OPTIM_DEFAULTS``): Muon on the routed matrices (a depth schedule or ``"auto"`` is resolved per parameter
    by :func:`hf_muon.param_groups`), AdamW groups (embeddings, head, norms, biases) at ``adamw_lr``."""
    import warnings

    from hf_muon import MuonConfig, create_optimizer

    auto = {k: cfg[k] for k in AUTO_KEYS if k in cfg}
    cfg = merge_config(OPTIM_DEFAULTS, {k: v for k, v in cfg.items() if k not in AUTO_KEYS}, "optimizer")
    config = MuonConfig(
        lr=float(cfg["lr"]),
        adamw_lr=float(cfg["adamw_lr"]),
        weight_decay=float(cfg["weight_decay"]),
        momentum=float(cfg["momentum"]),
        nesterov=bool(cfg["nesterov"]),
        ns_steps=cfg["ns_steps"],
        coefficients=cfg["coefficients"],
        scale_mode=cfg["scale_mode"],
        betas=tuple(cfg["betas"]),
        eps=float(cfg["eps"]),
        spectral_power=float(cfg["spectral_power"]),
        update_base=cfg["update_base"],
        ns_dtype=cfg["ns_dtype"],
        auto_every=int(cfg["auto_every"]),
        **auto,
    )
    with warnings.catch_warnings():  # sweeps deliberately visit lrs outside a mode's usual range
        warnings.filterwarnings("ignore", message=r"Muon lr=")
        return create_optimizer(model, config)


def muon_params(opt) -> list[tuple[str, torch.Tensor, dict]]:
    """``(name, param, group)`` of every Muon-routed parameter."""
    out = []
    for g in opt.param_groups:
        if not g.get("use_muon"):
            continue
        names = g.get("param_names") or [f"param{i}" for i in range(len(g["params"]))]
        out += [(n, p, g) for n, p in zip(names, g["params"])]
    return out
