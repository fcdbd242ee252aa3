"""The routing made visible at train start: one line where scripts show it, the full table in the output dir.

``hf_muon: N tensors (P params, x %) on Muon, M on AdamW, K frozen — full table: <output_dir>/hf_muon_routing.txt``
goes to the ``hf_muon`` logger at WARNING (shown by every script's default logging; Python's last-resort
handler prints it when nothing is configured), and ``hf_muon_routing.txt`` / ``hf_muon_routing.json`` are
written on the main process (rank 0) only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..model.routing import Route, routing_report

logger = logging.getLogger("hf_muon")


def summary(routes: list[Route]) -> dict:
    counts = {k: [r for r in routes if r.kind == k] for k in ("muon", "adamw", "frozen")}
    total = sum(r.param.numel() for r in routes if r.kind != "frozen") or 1
    muon_params = sum(r.param.numel() for r in counts["muon"])
    return {"muon_tensors": len(counts["muon"]), "muon_params": muon_params,
            "muon_share": muon_params / total, "adamw_tensors": len(counts["adamw"]),
            "adamw_params": sum(r.param.numel() for r in counts["adamw"]), "frozen_tensors": len(counts["frozen"])}


def announce(routes: list[Route], output_dir: str | None, main_process: bool = True) -> str:
    """Log the one-line summary; on the main process write the full table and its JSON form."""
    s = summary(routes)
    where = ""
    if output_dir and main_process:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "hf_muon_routing.txt").write_text(routing_report(routes) + "\n")
        rows = [{"name": r.name, "shape": list(r.shape), "kind": r.kind, "reason": r.reason,
                 "decay": r.decay, "transposed": r.transposed, "experts": r.experts} for r in routes]
        (out / "hf_muon_routing.json").write_text(json.dumps({"summary": s, "routes": rows}, indent=1) + "\n")
        where = f" — full table: {out / 'hf_muon_routing.txt'}"
    line = (f"hf_muon: {s['muon_tensors']} tensors ({s['muon_params']:,} params, {100 * s['muon_share']:.1f} %) on "
            f"Muon, {s['adamw_tensors']} on AdamW, {s['frozen_tensors']} frozen{where}")
    if main_process:
        logger.warning(line)
    return line


__all__ = ["announce", "summary"]
