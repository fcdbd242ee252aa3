"""The recipes' config: section defaults (data, train, optimizer) and a YAML loader that names unknown keys."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[3]

DATA_DEFAULTS: dict[str, Any] = {
    "data_dir": None,  # null: $HF_MUON_DATA, else ../shared/data beside the repository
    "corpus": "tinystories",
    "block_size": 128,
    "max_tokens": None,
    "vocab_size": 4096,  # re-indexed vocabulary (most frequent ids + one "other" id)
    "val_fraction": 0.05,
    "max_val_blocks": 32,
}

TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 100,
    "batch_size": 8,
    "warmup_steps": 10,
    "decay_ratio": 0.1,  # linear decay to min_lr_ratio over the last fraction of steps
    "min_lr_ratio": 0.0,
    "grad_clip": None,
    "eval_every": 50,
    "eval_batch_size": 16,
    "seed": 0,
}

# the optimizer section: MuonConfig fields (hf_muon.config); ns_steps may be an int, "auto" or a depth schedule
OPTIM_DEFAULTS: dict[str, Any] = {
    "lr": 0.02,
    "adamw_lr": 3e-3,
    "weight_decay": 0.0,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    "coefficients": "polar_express",
    "scale_mode": "keller",
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "spectral_power": 0.0,
    "update_base": "momentum",
    "ns_dtype": "auto",
    "auto_every": 100,
}

# the auto rule's settings are optional keys (absent: MuonConfig's defaults), so configs that never use "auto"
# keep their specs
AUTO_KEYS = ("auto_quantile", "auto_target", "auto_min", "auto_max")


def merge_config(defaults: dict, data: dict | None, where: str = "") -> dict:
    """``data`` merged over a deep copy of ``defaults``; unknown keys raise ``ValueError`` naming the path.

    A default of ``None`` or a non-dict value accepts anything; a dict default recurses, except that a
    default that is an *empty* dict accepts any mapping (free-form tables such as variant lists).
    """
    out = copy.deepcopy(defaults)
    if data is None:
        return out
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in defaults:
            raise ValueError(f"unknown config key {path!r}; valid keys here: {', '.join(map(str, defaults))}")
        if isinstance(defaults[key], dict) and defaults[key]:
            out[key] = merge_config(defaults[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike, defaults: dict) -> dict:
    """Read a recipe YAML and merge it over ``defaults`` (see :func:`merge_config`)."""
    import yaml

    text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    return merge_config(defaults, data, "")
