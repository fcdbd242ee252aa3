"""Output of the recipes: atomic JSON, markdown tables and numbers, the reproducing command, matplotlib, the
machine's environment and the report's markdown.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import REPO_DIR


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Indented JSON, written atomically (``path.tmp`` then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one ``l``/``r``/``c`` per column (default left)."""
    align = align or "l" * len(headers)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |")
    return "\n".join(lines)


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def command_line(script: str | os.PathLike, argv: Sequence[str]) -> str:
    """The command that reproduces this run, with repository-relative paths where possible."""

    def rel(s: str) -> str:
        try:
            return str(Path(s).resolve().relative_to(REPO_DIR))
        except ValueError:
            return s

    parts = ["python", rel(str(script))] + [rel(a) if Path(a).exists() else a for a in argv]
    return " ".join(parts)


def plt():
    """matplotlib.pyplot with the Agg backend, or ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    return pyplot


def save_figure(fig, out: Path, name: str) -> str:
    """Lay out ``fig``, write it as ``out/name`` (PNG, 110 dpi), close it, and return ``name`` (for the report)."""
    fig.tight_layout()
    fig.savefig(Path(out) / name, dpi=110)
    plt().close(fig)
    return name


def environment() -> dict:
    """Versions, threads and load of the machine that ran a recipe (for summaries and reports)."""
    import platform

    try:
        import transformers

        tf_version = transformers.__version__
    except Exception:  # pragma: no cover
        tf_version = None
    return {
        "torch": torch.__version__,
        "transformers": tf_version,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def describe_environment(env: dict) -> str:
    load = f", 1-min load {env['load_average'][0]:.1f} at the end" if env.get("load_average") else ""
    return (
        f"torch {env['torch']}, transformers {env['transformers']}, {env['torch_threads']} torch thread(s) on "
        f"{env['cpu_count']} cores{load}"
    )


def report_text(lines: list[str], figs: Sequence[str]) -> str:
    """A report's markdown: ``lines``, then a Plots section showing ``figs`` (PNG names beside report.md)."""
    if figs:
        lines = lines + ["## Plots\n", *(f"![{f}]({f})" for f in figs), ""]
    return "\n".join(lines) + "\n"
