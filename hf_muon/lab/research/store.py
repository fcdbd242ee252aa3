"""Resumable run storage: :class:`RunStore` keeps one JSON per training run under ``<out>/runs``; a finished
run whose stored spec equals the requested one is loaded instead of re-run, so an interrupted recipe resumes
where it stopped (granularity: one training run).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .report import write_json


def _jsonable(x):
    """Specs compare as their JSON form (tuples → lists, floats as written)."""
    return json.loads(json.dumps(x, default=str))


class RunStore:
    """One JSON per training run under ``<root>/runs``; finished runs with an equal spec are skipped."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.dir = self.root / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.executed: list[str] = []
        self.skipped: list[str] = []

    def path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    def load(self, run_id: str, spec: dict | None = None) -> dict | None:
        """The stored record when the run finished (and its spec equals ``spec`` when given)."""
        p = self.path(run_id)
        if not p.is_file():
            return None
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            return None
        if rec.get("status") != "done":
            return None
        if spec is not None and rec.get("spec") != _jsonable(spec):
            return None
        return rec

    def run(self, run_id: str, spec: dict, fn: Callable[[], dict]) -> dict:
        """``fn()``'s result for this run, from disk when already finished with the same spec."""
        rec = self.load(run_id, spec)
        if rec is not None:
            self.skipped.append(run_id)
            return rec["result"]
        started = time.time()
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        result = fn()
        rec = {
            "run_id": run_id,
            "status": "done",
            "spec": _jsonable(spec),
            "result": _jsonable(result),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "wall_s": time.time() - started,
            "load_average_at_start": load,
            "torch_threads": torch.get_num_threads(),
        }
        write_json(self.path(run_id), rec)
        self.executed.append(run_id)
        return rec["result"]

    def records(self) -> list[dict]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except json.JSONDecodeError:
                continue
        return out
