"""The study's units of work: where each model lives (:func:`model_units`) and its ``DONE.json`` marker.

Shared by the pipeline (which runs the units) and the report (which reads them), so neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import StudyConfig

DONE = "DONE.json"


def done(path: Path) -> dict | None:
    """The unit's ``DONE.json`` record, or ``None`` when it has not finished."""
    f = path / DONE
    return json.loads(f.read_text()) if f.exists() else None


def mark(path: Path, info: dict) -> dict:
    """Write ``info`` as the unit's ``DONE.json`` (atomically) and return it."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (DONE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str))
    tmp.replace(path / DONE)
    return info


def model_units(cfg: StudyConfig, root: Path) -> list[dict]:
    """Every model the study produces, with where it lives (used by score and report)."""
    units = []
    bases = ["pretrained"] if cfg.model.base_model else cfg.optimizers
    for seed in cfg.seeds:
        for base in bases:
            units.append({"seed": seed, "pair": f"{base} / -", "kind": "base", "dir": root / f"seed{seed}" / f"base-{base}",
                          "pretrain": base, "sft": None, "lora": False})
            for opt in cfg.optimizers:
                for lora in ([False, True] if cfg.sft.lora else [False]):
                    tag = f"sft-{base}-{opt}" + ("-lora" if lora else "")
                    units.append({"seed": seed, "pair": f"{base} / {opt}" + (" (LoRA)" if lora else ""), "kind": "sft",
                                  "dir": root / f"seed{seed}" / tag, "pretrain": base, "sft": opt, "lora": lora})
    return units


__all__ = ["DONE", "done", "mark", "model_units"]
