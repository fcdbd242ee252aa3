"""Run every benchmark script in this folder, one after another, each in its own process.

The machine-load check is done once here, before the first script (a script started right after
another would otherwise see that script's own load and refuse). The reading is passed to the scripts,
which record it in their JSON. ``--device``, ``--tiny`` and ``--allow-busy`` are forwarded.

Usage::

    python benchmarks/run_all.py --device cpu
    python benchmarks/run_all.py --tiny --allow-busy    # smoke run of every script
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# Script files in this folder, run in this order; each takes --device, --tiny and --allow-busy.
SCRIPTS = ("bench_step.py", "bench_trainer.py", "bench_distributed.py", "bench_convergence.py", "bench_scaling.py")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tiny", action="store_true", help="smoke-test sizes in every script")
    ap.add_argument(
        "--allow-busy", action="store_true", help="run even when the 1-minute load is above 0.5/core"
    )
    ap.add_argument(
        "--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS), help="run only these scripts"
    )
    args = ap.parse_args(argv)

    load = common.check_load(args.allow_busy)
    env = dict(os.environ)
    env[common.PARENT_LOAD_ENV] = json.dumps(load)
    forwarded = ["--device", args.device] + (["--tiny"] if args.tiny else [])
    failures = []
    for script in args.only:
        cmd = [sys.executable, str(common.BENCH_DIR / script), *forwarded, "--allow-busy"]
        print(f"\n>>> {' '.join(cmd)}", flush=True)
        start = time.time()
        rc = subprocess.call(cmd, cwd=common.REPO_DIR, env=env)
        print(f"<<< {script}: exit {rc} after {time.time() - start:.0f} s", flush=True)
        if rc != 0:
            failures.append(f"{script} (exit {rc})")
    if failures:
        print("failed: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
