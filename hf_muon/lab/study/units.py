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


VARIANT_LABELS = {"lora": "LoRA", "p_half": "p=½", "warm_start": "warm start", "lr_half": "lr×½", "lr_quarter": "lr×¼"}
LR_FACTORS = {"lr_half": 0.5, "lr_quarter": 0.25}  # of the tuned AdamW / Muon SFT lr


def pair_label(base: str, sft: str | None, variant: str = "") -> str:
    """``"adamw / muon"``, ``"adamw / muon (warm start)"``, ``"muon / -"`` (a base)."""
    if sft is None:
        return f"{base} / -"
    return f"{base} / {sft}" + (f" ({VARIANT_LABELS[variant]})" if variant else "")


def sft_cells(cfg: StudyConfig, base: str) -> list[tuple[str, str]]:
    """``[(SFT optimizer, variant)]`` on ``base``: the 2×2 cells, LoRA variants (``sft.lora``), and on the AdamW base
    the remedy arms (``sft.remedies``), in a fixed order (the lr-scaled remedies after the cell they scale)."""
    cells = [(o, "") for o in cfg.optimizers]
    if cfg.sft.lora:
        cells += [(o, "lora") for o in cfg.optimizers]
    if base == "adamw":
        for r in cfg.sft.remedies:
            new = [("adamw", "lora"), ("muon", "lora")] if r == "lora" else [("muon", r)]
            cells += [c for c in new if c not in cells]
    return cells


def model_units(cfg: StudyConfig, root: Path) -> list[dict]:
    """Every model the study produces, with where it lives (used by the stages and the report)."""
    units = []
    bases = ["pretrained"] if cfg.model.base_model else cfg.optimizers
    for seed in cfg.seeds:
        for base in bases:
            units.append(
                {
                    "seed": seed,
                    "pair": pair_label(base, None),
                    "kind": "base",
                    "dir": root / f"seed{seed}" / f"base-{base}",
                    "pretrain": base,
                    "sft": None,
                    "lora": False,
                    "variant": "",
                }
            )
            for opt, variant in sft_cells(cfg, base):
                tag = f"sft-{base}-{opt}" + (f"-{variant}" if variant else "")
                units.append(
                    {
                        "seed": seed,
                        "pair": pair_label(base, opt, variant),
                        "kind": "sft",
                        "dir": root / f"seed{seed}" / tag,
                        "pretrain": base,
                        "sft": opt,
                        "lora": variant == "lora",
                        "variant": variant,
                    }
                )
    return units


__all__ = ["DONE", "LR_FACTORS", "VARIANT_LABELS", "done", "mark", "model_units", "pair_label", "sft_cells"]
