"""Interpreter start-up cost of the ``--optim muon`` startup hook (``hf_muon-autoregister.pth``).

A fresh virtualenv gets hf_muon from this repo as a wheel (the project venv's packages are visible to it through
a path file, so nothing is downloaded). Timed, interleaved hook-on / hook-off (the ``.pth`` file renamed away),
median wall time of a new interpreter: ``python -c pass`` (the cost every Python process pays), and
``python -c "from transformers import TrainingArguments"`` (where the hook registers ``--optim muon``). Also the
hook module's own import time from ``-X importtime``. Target: ≤ 2 ms added to ``python -c pass``.

    python benchmarks/bench_startup.py [--tiny] [--repeats 40]
    python benchmarks/bench_startup.py --from-json benchmarks/results/startup.json   # report only
"""

from __future__ import annotations

import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import cli
from benchmarks.reports import startup as REPORT

REPO = Path(__file__).resolve().parents[1]
PTH = "hf_muon-autoregister.pth"
COMMANDS = {"python -c pass": "pass", "import TrainingArguments": "from transformers import TrainingArguments"}


def bare_venv(root: Path) -> tuple[Path, Path]:
    """A venv without hf_muon that sees this environment's dependencies through a path file (no download);
    returns (python, its site-packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    py = root / "venv" / "bin" / "python"
    query = [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    purelib = Path(subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "project_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return py, purelib


def build_wheel(root: Path) -> Path:
    """A wheel of this repo, built from a copy of the checkout (as a user's ``pip wheel`` would); returns its path."""
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info", "results"))
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip_wheel, "-w", str(root / "dist"), str(src)], check=True, cwd=root)
    return next((root / "dist").glob("hf_muon-*.whl"))


def install_into(py: Path, root: Path, *target) -> None:
    """``pip install`` ``target`` (a wheel, or ``-e`` and a folder) into the venv of ``py``, deps already there."""
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, *map(str, target)], check=True, cwd=root)


def fresh_venv(root: Path) -> tuple[Path, Path]:
    """A venv with hf_muon installed from a wheel of this repo; returns (python, its site-packages)."""
    py, purelib = bare_venv(root)
    install_into(py, root, build_wheel(root))
    return py, purelib


def _wall(py: Path, code: str, cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run([str(py), "-c", code], check=True, cwd=cwd, capture_output=True)
    return time.perf_counter() - t


def _hook_import_us(py: Path, cwd: Path) -> float:
    err = subprocess.run([str(py), "-X", "importtime", "-c", "pass"], capture_output=True, text=True, cwd=cwd).stderr
    line = next(x for x in err.splitlines() if x.rstrip().endswith("_hf_muon_hook"))
    return float(line.split("|")[1])  # cumulative microseconds


def measure(args, load, device) -> None:
    repeats = args.repeats or (4 if args.tiny else 40)
    started = time.time()
    data = cli.begin(args, "startup", load, {})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        py, purelib = fresh_venv(root)
        on, off = purelib / PTH, purelib / (PTH + ".off")
        times = {(name, state): [] for name in COMMANDS for state in ("on", "off")}
        hook_us = []
        for _ in range(repeats):
            for state in ("on", "off"):  # interleaved: noise cancels in the difference of medians
                if state == "off":
                    on.rename(off)
                try:
                    for name, code in COMMANDS.items():
                        times[(name, state)].append(_wall(py, code, root))
                finally:
                    if state == "off":
                        off.rename(on)
            hook_us.append(_hook_import_us(py, root))
    data["results"] = {
        name: {state: 1000 * statistics.median(times[(name, state)]) for state in ("on", "off")} for name in COMMANDS
    }
    data["hook_import_ms_median"] = statistics.median(hook_us) / 1000
    data["config"] = {"repeats": repeats, "tiny": args.tiny}
    data["targets"] = REPORT.targets(data)
    cli.publish(args, cli.finish(data, started, False), REPORT)


def main(argv=None) -> int:
    ap = cli.standard_parser(__doc__, "startup", "4 repeats instead of 40")
    ap.add_argument("--repeats", type=int, default=None)
    return cli.run(ap.parse_args(argv), REPORT, measure)


if __name__ == "__main__":
    raise SystemExit(main())
