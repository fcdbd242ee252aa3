"""The routing made visible at train start: one line where scripts show it, the full table in the output dir.

``hf_muon: N tensors (P params, x %) on Muon, M on AdamW, K frozen, layout: DDP ×2 — full table:
<output_dir>/hf_muon_routing.txt`` goes to the ``hf_muon`` logger at WARNING (shown by every script's default logging; Python's last-resort
handler prints it when nothing is configured), and ``hf_muon_routing.txt`` / ``hf_muon_routing.json`` are
written on the main process (rank 0) only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..model.routing import Route, routing_report

logger = logging.getLogger("hf_muon")


def summary(routes: list[Route]) -> dict:
    counts = {k: [r for r in routes if r.kind == k] for k in ("muon", "adamw", "frozen")}
    total = sum(r.param.numel() for r in routes if r.kind != "frozen") or 1
    muon_params = sum(r.param.numel() for r in counts["muon"])
    return {
        "muon_tensors": len(counts["muon"]),
        "muon_params": muon_params,
        "muon_share": muon_params / total,
        "adamw_tensors": len(counts["adamw"]),
        "adamw_params": sum(r.param.numel() for r in counts["adamw"]),
        "frozen_tensors": len(counts["frozen"]),
    }


def _accelerate_state():
    """accelerate's process-wide state once the Trainer's ``Accelerator`` exists (None before, or without it)."""
    try:
        from accelerate.state import AcceleratorState
    except ImportError:
        return None
    return AcceleratorState() if AcceleratorState._shared_state else None


def fsdp_requested(args) -> bool:
    env = os.environ.get("ACCELERATE_USE_FSDP", "false").strip().lower() in ("1", "true", "yes")
    return bool(getattr(args, "fsdp", None)) or env


def run_layout(args, state=None) -> str:
    """The layout a Trainer run actually has (``DDP ×2``, ``FSDP2 mesh (2,)``, ``HSDP mesh (2, 2)``, ``single
    process``), read from accelerate's state; warns when FSDP was asked for but the model will not be sharded."""
    state = state if state is not None else _accelerate_state()
    world = int(getattr(args, "world_size", 1) or 1)
    kind = str(getattr(getattr(state, "distributed_type", None), "value", "") or "")
    if kind == "FSDP":
        plugin = getattr(state, "fsdp_plugin", None)
        version = getattr(plugin, "fsdp_version", 2)
        pc = getattr(state, "parallelism_config", None)
        replicate = int(getattr(pc, "dp_replicate_size", 1) or 1) if pc is not None else 1
        if replicate > 1:
            return f"HSDP mesh ({replicate}, {world // replicate})"
        return f"FSDP{version} mesh ({world},)"
    layout = f"DDP ×{world}" if world > 1 else "single process"
    if fsdp_requested(args) and getattr(args, "process_index", 0) == 0:
        device = getattr(getattr(state, "device", None), "type", "cpu")
        logger.warning(
            f"hf_muon: FSDP was requested (--fsdp / fsdp_config / an accelerate FSDP config), but accelerate runs "
            f"{kind or 'no distributed backend'} on {device}: the model is NOT sharded (accelerate enables FSDP only "
            f"on GPU-type devices), so this run is {layout}. On CPU, shard with torch's fully_shard yourself "
            "(docs/launchers.md)."
        )
    if fsdp_requested(args):
        layout += " (FSDP requested, not applied)"
    return layout


def announce(routes: list[Route], output_dir: str | None, main_process: bool = True, layout: str | None = None) -> str:
    """Log the one-line summary (with the run's layout); on the main process write the full table and JSON."""
    s = summary(routes)
    if layout:
        s["layout"] = layout
    where = ""
    if output_dir and main_process:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "hf_muon_routing.txt").write_text(routing_report(routes) + "\n")
        rows = [
            {
                "name": r.name,
                "shape": list(r.shape),
                "kind": r.kind,
                "reason": r.reason,
                "decay": r.decay,
                "transposed": r.transposed,
                "experts": r.experts,
            }
            for r in routes
        ]
        (out / "hf_muon_routing.json").write_text(json.dumps({"summary": s, "routes": rows}, indent=1) + "\n")
        where = f" — full table: {out / 'hf_muon_routing.txt'}"
    line = (
        f"hf_muon: {s['muon_tensors']} tensors ({s['muon_params']:,} params, {100 * s['muon_share']:.1f} %) on "
        f"Muon, {s['adamw_tensors']} on AdamW, {s['frozen_tensors']} frozen"
        + (f", layout: {layout}" if layout else "")
        + where
    )
    if main_process:
        logger.warning(line)
    return line


__all__ = ["announce", "fsdp_requested", "run_layout", "summary"]
