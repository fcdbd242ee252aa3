"""Shared helpers for the benchmark scripts in this folder.

* :func:`machine_info` / :func:`package_versions`: what ran the benchmark (recorded in every JSON).
* :func:`check_load`: refuse to benchmark on a busy machine. The 1-minute load average must be at most
  ``MAX_LOAD_PER_CORE`` per core unless ``--allow-busy`` is passed; a busy core (another process)
  inflates CPU timings several-fold, so such numbers are not reported as results.
* :class:`OtherProcesses`: how many cores other processes used during a timed region (the load check
  only sees the start of a run); timings with more than ``MAX_OTHER_CORES`` are flagged.
* :func:`time_calls`: median wall time of a callable after warmup calls (with an optional untimed
  ``before`` hook per call and a device sync inside the timed region).
* :func:`markdown_table`, :func:`update_markdown_section`, :func:`write_json`: writing results.
* :func:`standard_parser` / :func:`start`: the command-line flags and start-up every timed script shares;
  :func:`run_line`, :func:`draw_plots` and :func:`publish`: the report's opening sentence, the plots (kept out of
  the repo for ``--tiny``) and the JSON + RESULTS.md output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

# JSON files and markdown tables are written as the research recipes write theirs (one implementation).
from hf_muon.lab.research import markdown_table, write_json  # noqa: F401

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

MAX_LOAD_PER_CORE = 0.5
# run_all.py checks the load once before it starts the scripts and passes the reading down in this
# variable (the scripts it runs one after another would otherwise see the load of the previous one).
PARENT_LOAD_ENV = "HF_MUON_BENCH_LOAD_CHECKED"

PACKAGES = (
    "hf_muon",
    "torch",
    "transformers",
    "accelerate",
    "numpy",
    "muon-optimizer",
    "heavyball",
    "pytorch-optimizer",
    "matplotlib",
)


# --------------------------------------------------------------------------- machine and versions
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags(
    wanted: Sequence[str] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"),
) -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_revision() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info(device: str = "cpu") -> dict:
    """CPU/GPU, core and thread counts, memory, OS and the repository revision."""
    import torch

    info = {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "device": device,
        "gpu": None,
        "git": _git_revision(),
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    return info


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (None when a package is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- load check
def load_average() -> dict:
    """The 1/5/15-minute load averages and the 1-minute value per core."""
    load1, load5, load15 = os.getloadavg()
    cores = os.cpu_count() or 1
    return {"load1": load1, "load5": load5, "load15": load15, "cores": cores, "load1_per_core": load1 / cores}


def check_load(allow_busy: bool, max_per_core: float = MAX_LOAD_PER_CORE) -> dict:
    """Print the load and exit (status 1, with the reason) when the machine is busy, unless ``allow_busy``.

    Busy means a 1-minute load average above ``max_per_core`` per core. When run_all.py has already
    checked (``HF_MUON_BENCH_LOAD_CHECKED`` set), its reading before the first script is the one that
    counts (the load now includes the previous script); this script's own reading is kept under
    ``"at_script_start"``.
    """
    parent = os.environ.get(PARENT_LOAD_ENV)
    if parent:
        load = json.loads(parent)
        load["at_script_start"] = load_average()
        load["checked_by"] = "run_all.py"
        print(f"load checked by run_all.py before the first script: {load['load1']:.2f} (1 min)")
        return load
    load = load_average()
    load["max_per_core"] = max_per_core
    load["busy"] = load["load1_per_core"] > max_per_core
    load["allow_busy"] = allow_busy
    load["checked_by"] = "script"
    print(
        f"load average {load['load1']:.2f} {load['load5']:.2f} {load['load15']:.2f} on {load['cores']} cores "
        f"({load['load1_per_core']:.2f} per core; limit {max_per_core} per core)"
    )
    if load["busy"] and not allow_busy:
        sys.exit(
            f"refusing to benchmark: 1-minute load {load['load1']:.2f} is above {max_per_core} per core "
            f"({max_per_core * load['cores']:.2f} on this machine). Wait for the machine to be idle, or pass "
            "--allow-busy to run anyway (results are then marked busy)."
        )
    if load["busy"]:
        print("warning: machine is busy; timings are marked busy=True and are not comparable")
    return load


# --------------------------------------------------------------------------- shared flags and start-up
def standard_parser(doc: str, name: str, tiny_help: str, plots: str | None = None) -> argparse.ArgumentParser:
    """A parser with the flags every benchmark script takes (``name`` names its JSON in results/).

    ``--tiny``, ``--device``, ``--allow-busy``, ``--out``, ``--no-markdown``, plus ``--plots-dir`` when the
    script draws figures (``plots`` says what goes there).
    """
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help=tiny_help)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--allow-busy", action="store_true", help="run even when the 1-minute load is above 0.5/core")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"JSON path (default results/{name}.json, tiny: results/{name}_tiny.json)")
    if plots:
        ap.add_argument("--plots-dir", type=Path, default=None,
                        help=f"where {plots} go (default results/; tiny: a temporary folder that is removed)")
    ap.add_argument("--no-markdown", action="store_true", help="do not update RESULTS.md (tiny runs never do)")
    return ap


def start(args: argparse.Namespace):
    """Common start-up: quiet deprecation noise, check the load, pick the device; returns (load, device).

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


def draw_plots(args: argparse.Namespace, draw: Callable[[Path], object]):
    """``draw(folder)`` into ``--plots-dir`` (default results/). A ``--tiny`` run without ``--plots-dir`` draws into a
    temporary folder (smoke-tests the plotting) and keeps nothing; returns what ``draw`` returned, or that note."""
    if args.plots_dir is not None or not args.tiny:
        return draw(args.plots_dir or RESULTS_DIR)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        made = draw(Path(tmp))
    drawn = isinstance(made, list) or (isinstance(made, str) and made.endswith(".png"))
    return "drawn to a temporary folder and removed (--tiny)" if drawn else made


# --------------------------------------------------------------------------- other processes during a run
MAX_OTHER_CORES = 0.2


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its reaped children)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        utime, stime, cutime, cstime = (int(x) for x in own[11:15])
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, (utime + stime + cutime + cstime) / tick


class OtherProcesses:
    """Average number of cores that *other* processes kept busy while the ``with`` block ran.

    Machine busy time (``/proc/stat``) minus this process's own CPU time (``/proc/self/stat``), over
    wall time. The load check only sees the start of a run; this catches processes that start during
    it. ``cores`` stays None where /proc is not available, and for blocks shorter than ``min_wall_s``
    (the counters tick every 10 ms, too coarse for a few milliseconds).
    """

    min_wall_s = 0.25

    def __enter__(self) -> OtherProcesses:
        self.cores: float | None = None
        self._start = (_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        (before, t0), after = self._start, _cpu_seconds()
        wall = time.perf_counter() - t0
        if before is not None and after is not None and wall >= self.min_wall_s:
            self.cores = max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall)


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall times of one benchmarked callable, in milliseconds."""

    median_ms: float
    times_ms: list[float]
    warmup_ms: list[float] = field(default_factory=list)
    reduced: bool = False  # True when a warmup call exceeded ``slow_s`` and one call was timed
    other_cores: float | None = None  # cores other processes kept busy during the timed calls

    def to_dict(self) -> dict:
        return asdict(self)


def time_calls(
    fn: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    before: Callable[[], object] | None = None,
    sync: Callable[[], object] | None = None,
    slow_s: float | None = None,
) -> Timing:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    ``before()`` runs untimed before every call (warmup and timed), ``sync()`` runs inside the timed
    region after the call (e.g. ``torch.cuda.synchronize``). When ``slow_s`` is given and a warmup
    call (the second one, when there are several: the first carries one-off costs) takes longer than
    that, the remaining warmup calls are skipped and a single call is timed (``reduced=True``).
    """

    def one() -> float:
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        return (time.perf_counter() - start) * 1e3

    warmup_ms: list[float] = []
    reduced = False
    for i in range(warmup):
        warmup_ms.append(one())
        # the first call carries one-off costs (state allocation, torch.compile): judge it only if it is the only one
        if slow_s is not None and (i > 0 or warmup == 1) and warmup_ms[-1] > slow_s * 1e3:
            reduced = True
            break
    with OtherProcesses() as others:
        times_ms = [one() for _ in range(1 if reduced else repeats)]
    return Timing(statistics.median(times_ms), times_ms, warmup_ms, reduced, others.cores)


# --------------------------------------------------------------------------- writing results
def publish(args: argparse.Namespace, data: dict, name: str, section: str, report: Callable[[dict], str]) -> Path:
    """Write ``results/<name>.json`` (``<name>_tiny.json`` for ``--tiny``; ``--out`` overrides), print the report and
    replace its RESULTS.md section unless ``--tiny`` / ``--no-markdown``. Returns the JSON path."""
    out = args.out or RESULTS_DIR / (f"{name}_tiny.json" if args.tiny else f"{name}.json")
    data["json_name"] = out.name
    text = report(data)
    print("\n" + text)
    write_json(out, data)
    print(f"wrote {out}")
    if not args.tiny and not args.no_markdown:
        update_markdown_section(RESULTS_MD, section, text)
        print(f"updated {RESULTS_MD}")
    return out


def run_line(data: dict, extra_versions: Sequence[str] = (), busy: str = "numbers not comparable",
             contended: str = "other processes ran during timing (rows marked CONTENDED), numbers not comparable") -> str:
    """The "Run <date> on <machine> …; versions. Load at start …" sentence every RESULTS.md section opens with,
    plus the busy / contended warnings (no closing period: callers may go on)."""
    mach, ver, load = data["machine"], data["versions"], data["load"]
    versions = ", ".join(f"{k} {ver[k]}" for k in ("torch", "transformers", "hf_muon", *extra_versions))
    return (
        f"Run {data['date']} on {mach['cpu']} ({mach['cores']} cores, {mach['torch_threads']} torch threads"
        + (f", GPU {mach['gpu']['name']}" if mach.get("gpu") else "")
        + f"), device `{data['args']['device']}`; {versions}. Load at start {load['load1']:.2f} (1 min)"
        + (f" — **machine busy, {busy}**" if load.get("busy") else "")
        + (f" — **{contended}**" if data["contended"] else "")
    )


def update_markdown_section(path: Path, key: str, body: str, title: str = "# Benchmark results") -> None:
    """Replace the section between ``<!-- key:start -->`` and ``<!-- key:end -->`` (append if absent)."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = (
        path.read_text()
        if path.exists()
        else f"{title}\n\nWritten by the scripts in benchmarks/; sections are replaced on each run.\n"
    )
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def fmt_ms(ms: float | None) -> str:
    """Milliseconds with precision that suits their size."""
    if ms is None:
        return "—"
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}×" if x < 10 else f"{x:,.1f}×"
