"""The common ``main`` of a recipe: :func:`start_recipe` (arguments, config, data, run store, the reproducing
command) and :class:`Recipe` (resumable runs and the ending: ``summary.json`` + ``report.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models import quiet_transformers
from .config import load_config
from .data import LMData, prepare_data
from .report import command_line, environment, write_json
from .store import RunStore


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is given (1 avoids OpenMP spin-waits for tiny models on busy cores)."""
    if n:
        torch.set_num_threads(int(n))


def parse_args(argv: Sequence[str] | None, description: str, default_out: Path):
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("config", help="recipe YAML (config.yaml: full CPU scale; tiny.yaml: tests)")
    ap.add_argument("--out", default=None, help=f"output folder (default: {default_out})")
    args = ap.parse_args(argv)
    args.out = Path(args.out) if args.out else default_out
    return args


@dataclass
class Recipe:
    """What every recipe's ``main`` sets up: its config, output folder, run store, data and command."""

    name: str
    cfg: dict
    out: Path
    store: RunStore
    data: LMData
    command: str
    results: dict = field(default_factory=dict)

    def run(self, run_id: str, spec: dict, fn: Callable[[], dict]) -> dict:
        """One resumable training run; its result (with ``wall_s``) is kept in ``self.results``."""
        res = self.store.run(run_id, spec, fn)
        rec = self.store.load(run_id)
        res["wall_s"] = rec.get("wall_s", 0) if rec else 0
        self.results[run_id] = res
        return res

    def announce(self, runs: int, est: dict) -> None:
        """Print the plan: how many training runs, their FLOPs and the estimated minutes."""
        print(
            f"{self.name}: {runs} training runs, ≈{est['flops'] / 1e12:.2f} TFLOP, estimated {est['minutes']:.1f} min",
            flush=True,
        )

    def finish(self, summary: dict, report: str) -> Path:
        """Write ``summary.json`` (with config, command, environment, data and run bookkeeping) and
        ``report.md``; print where they are."""
        full = {
            "config": self.cfg,
            "command": self.command,
            "environment": environment(),
            "data": self.data.info,
            **summary,
            "executed": self.store.executed,
            "skipped": self.store.skipped,
        }
        write_json(self.out / "summary.json", full)
        (self.out / "report.md").write_text(report)
        print(
            f"ran {len(self.store.executed)} run(s), skipped {len(self.store.skipped)} finished; "
            f"report: {self.out / 'report.md'}"
        )
        return self.out


def start_recipe(script: str | os.PathLike, doc: str, defaults: dict, argv: Sequence[str] | None) -> Recipe:
    """Parse ``CONFIG [--out DIR]``, load the config over ``defaults``, quiet transformers, set the thread
    count, open the run store and prepare the data (default output: ``results/`` beside ``script``)."""
    import sys

    script = Path(script).resolve()
    args = parse_args(argv, doc.splitlines()[0], script.parent / "results")
    cfg = load_config(args.config, defaults)
    quiet_transformers()
    set_threads(cfg.get("threads"))
    args.out.mkdir(parents=True, exist_ok=True)
    store = RunStore(args.out)
    data = prepare_data(cfg["data"])
    command = command_line(script, list(argv if argv is not None else sys.argv[1:]))
    return Recipe(cfg.get("name", script.parent.name), cfg, args.out, store, data, command)
