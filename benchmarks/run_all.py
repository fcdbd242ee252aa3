"""Run every benchmark script in this folder, one after another, each in its own process.

The machine-load check is done once here, before the first script (a script started right after
another would otherwise see that script's own load and refuse). The reading is passed to the scripts,
which record it in their JSON. ``--device``, ``--tiny``, ``--allow-busy`` and ``--results-dir`` are
forwarded. ``--report-only`` measures nothing: it rewrites every RESULTS.md section (and the plots) from
the results JSON already in ``results/``.

Usage::

    python benchmarks/run_all.py --device cpu
    python benchmarks/run_all.py --tiny --allow-busy    # smoke run of every script
    python benchmarks/run_all.py --report-only          # RESULTS.md from the committed JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import cli, reports
from benchmarks.machine import BENCH_DIR, PARENT_LOAD_ENV, REPO_DIR, check_load

# Script files in this folder, run in this order; each takes --device, --tiny, --allow-busy and --results-dir.
SCRIPTS = tuple(f"bench_{name}.py" for name in reports.NAMES)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tiny", action="store_true", help="smoke-test sizes in every script")
    ap.add_argument("--allow-busy", action="store_true", help="run even when the machine is busy (results marked)")
    ap.add_argument("--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS), help="run only these scripts")
    ap.add_argument("--results-dir", type=Path, default=cli.RESULTS_DIR, help="where the JSON go (default results/)")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite RESULTS.md (and the plots) from <results-dir>/<name>.json",
    )
    args = ap.parse_args(argv)

    if args.report_only:
        for script in args.only:
            name = script.removeprefix("bench_").removesuffix(".py")
            report = reports.module(name)
            cli.regenerate(args.results_dir / f"{report.NAME}.json", report)
            for extra in map(reports.module, reports.EXTRA.get(name, ())):  # written only under an option
                if (args.results_dir / f"{extra.NAME}.json").exists():
                    cli.regenerate(args.results_dir / f"{extra.NAME}.json", extra)
        return 0
    load = check_load(args.allow_busy)
    env = dict(os.environ)
    env[PARENT_LOAD_ENV] = json.dumps(load)
    forwarded = ["--device", args.device, "--results-dir", str(args.results_dir)] + (["--tiny"] if args.tiny else [])
    failures = []
    for script in args.only:
        cmd = [sys.executable, str(BENCH_DIR / script), *forwarded, "--allow-busy"]
        print(f"\n>>> {' '.join(cmd)}", flush=True)
        start = time.time()
        rc = subprocess.call(cmd, cwd=REPO_DIR, env=env)
        print(f"<<< {script}: exit {rc} after {time.time() - start:.0f} s", flush=True)
        if rc != 0:
            failures.append(f"{script} (exit {rc})")
    if failures:
        print("failed: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
