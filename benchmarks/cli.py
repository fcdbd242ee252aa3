"""What every benchmark script shares: its flags, start-up, the run record, publishing and regenerating.

* :func:`standard_parser`: ``--tiny``, ``--device``, ``--allow-busy``, ``--out``, ``--results-dir``,
  ``--no-markdown``, ``--from-json`` (+ ``--plots-dir`` for scripts that draw).
* :func:`start`: quiet deprecation noise, the load check, the device; :func:`begin` / :func:`finish`: the
  fields every results JSON carries (date, arguments, machine with CPU flags, versions, seeds, load).
* :func:`publish`: ``results/<name>.json`` (``<name>_tiny.json`` for ``--tiny``), the printed report and its
  RESULTS.md section (never for ``--tiny``); :func:`regenerate`: the same report (and plots) from a JSON
  already written, measuring nothing (``--from-json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from .machine import BENCH_DIR, check_load, load_average, machine_info, package_versions
from .reports.format import update_markdown_section, write_json

RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"


def standard_parser(doc: str, name: str, tiny_help: str, plots: str | None = None) -> argparse.ArgumentParser:
    """A parser with the flags every benchmark script takes (``name`` names its JSON in results/)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help=tiny_help)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--allow-busy", action="store_true", help="run even when the machine is busy (results marked)")
    ap.add_argument(
        "--out", type=Path, default=None, help=f"JSON path (default <results-dir>/{name}.json, tiny: {name}_tiny.json)"
    )
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes (default results/)")
    if plots:
        ap.add_argument(
            "--plots-dir",
            type=Path,
            default=None,
            help=f"where {plots} go (default the results dir; tiny: a temporary folder that is removed)",
        )
    ap.add_argument("--no-markdown", action="store_true", help="do not update RESULTS.md (tiny runs never do)")
    ap.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: print the report of this results JSON and rewrite its RESULTS.md section"
        + (" and plots" if plots else ""),
    )
    return ap


def add_timing_args(ap: argparse.ArgumentParser, per: str) -> None:
    """``--repeats`` / ``--warmup`` of the scripts that time ``optimizer.step()`` (see :func:`warmup_of`)."""
    ap.add_argument("--repeats", type=int, default=None, help=f"timed steps per optimizer (default: per {per})")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (default 2, tiny 1)")


def warmup_of(args: argparse.Namespace) -> int:
    return args.warmup if args.warmup is not None else (1 if args.tiny else 2)


def start(args: argparse.Namespace):
    """Quiet deprecation noise, check the load, pick the device; returns (load, device).

    ``--tiny`` runs use one torch thread: timings are meaningless at those sizes, and one thread keeps the
    smoke test short and predictable when other processes hold the cores (OpenMP threads waiting on a busy
    core stall).
    """
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    load = check_load(args.allow_busy)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    if args.tiny:
        torch.set_num_threads(1)
    return load, torch.device(args.device)


def begin(args: argparse.Namespace, benchmark: str, load: dict, seeds: dict) -> dict:
    """The opening fields of a results JSON (the machine record holds the CPU model and flags)."""
    return {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine_info(args.device),
        "versions": package_versions(),
        "seeds": seeds,
        "load": load,
    }


def finish(data: dict, started: float, contended: bool) -> dict:
    """The closing fields: whether other processes ran while measuring, the load at the end, the seconds taken."""
    data["contended"] = contended
    data["load_at_end"] = load_average()
    data["seconds"] = time.time() - started
    return data


def draw_plots(args: argparse.Namespace, draw: Callable[[Path], object]):
    """``draw(folder)`` into ``--plots-dir`` (default the results dir). A ``--tiny`` run without ``--plots-dir``
    draws into a temporary folder (smoke-tests the plotting) and keeps nothing; returns what ``draw`` returned,
    or that note."""
    if args.plots_dir is not None or not args.tiny:
        return draw(args.plots_dir or args.results_dir)
    with tempfile.TemporaryDirectory() as tmp:
        made = draw(Path(tmp))
    drawn = isinstance(made, (list, dict)) or (isinstance(made, str) and made.endswith(".png"))
    return "drawn to a temporary folder and removed (--tiny)" if drawn else made


def _warn(data: dict) -> None:
    if data.get("load", {}).get("busy"):
        print("WARNING: the machine was busy at start; these timings are not comparable", file=sys.stderr)
    if data.get("contended"):
        print(
            "WARNING: other processes ran while timing (CONTENDED in the report); timings are not comparable",
            file=sys.stderr,
        )


def publish(args: argparse.Namespace, data: dict, report: ModuleType) -> Path:
    """Write the JSON (``--out`` overrides the name), print the report and replace its RESULTS.md section
    unless ``--tiny`` / ``--no-markdown``. Returns the JSON path."""
    name = report.NAME
    out = args.out or args.results_dir / (f"{name}_tiny.json" if args.tiny else f"{name}.json")
    data["json_name"] = out.name
    text = report.report(data)
    print("\n" + text)
    write_json(out, data)
    print(f"wrote {out}")
    if not args.tiny and not args.no_markdown:
        update_markdown_section(RESULTS_MD, report.SECTION, text)
        print(f"updated {RESULTS_MD}")
    _warn(data)
    return out


def _tiny(data: dict) -> bool:
    return bool((data.get("args") or data.get("config") or {}).get("tiny"))


def regenerate(path: Path, report: ModuleType, *, markdown: bool = True, plots_dir: Path | None = None) -> str:
    """The report of a results JSON, measuring nothing: printed, its RESULTS.md section rewritten (``markdown``, not
    for tiny results) and, when the JSON records drawn plots, those redrawn into ``plots_dir`` (default: beside
    the JSON). Returns the report."""
    data = json.loads(Path(path).read_text())
    data.setdefault("json_name", Path(path).name)
    text = report.report(data)
    print(text)
    tiny = _tiny(data)
    if markdown and not tiny:
        update_markdown_section(RESULTS_MD, report.SECTION, text)
        print(f"updated {RESULTS_MD} from {path}")
    recorded = data.get("plots", data.get("plot"))
    if hasattr(report, "plots") and not tiny and (isinstance(recorded, dict) or str(recorded).endswith(".png")):
        made = report.plots(data, plots_dir or Path(path).parent)
        print(f"plots: {made}")
    return text


def run(args: argparse.Namespace, report: ModuleType, measure: Callable[..., object]) -> int:
    """A script's main: with ``--from-json`` regenerate its report, else :func:`start` and
    ``measure(args, load, device)`` (which publishes). Returns the exit status."""
    if args.from_json:
        regenerate(args.from_json, report, markdown=not args.no_markdown, plots_dir=getattr(args, "plots_dir", None))
    else:
        measure(args, *start(args))
    return 0
