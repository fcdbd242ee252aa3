"""What ran a benchmark, and whether the machine was quiet enough for its timings to mean anything.

* :func:`machine_info`: CPU model and the instruction-set flags that decide which Newton-Schulz dtype wins
  (bf16 dot products: ``avx512_bf16`` / AMX), torch's CPU capability and threads, memory, OS, GPU, git
  revision; :func:`package_versions`: the installed versions of hf_muon, torch and the peers.
* :func:`check_load`: refuse to benchmark on a busy machine. Busy means a 1-minute load average above
  ``MAX_LOAD_PER_CORE`` per core, or other processes keeping more than ``MAX_OTHER_CORES`` cores busy during a
  short sample at start; ``--allow-busy`` runs anyway and the results are marked busy.
* :class:`OtherProcesses`: how many cores other processes used while a block ran (the start check cannot
  see processes that start later); timings above ``MAX_OTHER_CORES`` are flagged CONTENDED.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

MAX_LOAD_PER_CORE = 0.5
MAX_OTHER_CORES = 0.2
START_SAMPLE_S = 0.5
# run_all.py checks the load once before it starts the scripts and passes the reading down in this
# variable (a script started right after another would otherwise see the load of that one).
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
# Flags looked up in /proc/cpuinfo. bf16 dot products (avx512_bf16, amx_bf16) make bf16 Newton-Schulz the
# fast one on CPU; without them bf16 matmuls are emulated and fp32 wins.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "amx_int8")


# --------------------------------------------------------------------------- machine and versions
def _cpuinfo(key: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_flags(wanted: Sequence[str] = CPU_FLAGS) -> list[str]:
    flags = set((_cpuinfo("flags") or "").split())
    return [f for f in wanted if f in flags]


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
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info(device: str = "cpu") -> dict:
    """CPU model and flags, torch's CPU capability, version and threads, memory, OS, GPU and git revision.

    ``cpu_flags`` lists the flags of ``cpu_flags_checked`` the CPU has (so a missing one is known to be
    missing); ``ns_auto_dtype_cpu`` is the Newton-Schulz dtype hf_muon's ``ns_dtype="auto"`` picks on this CPU.
    """
    import torch

    from hf_muon.ns.newton_schulz import resolve_dtype

    info = {
        "cpu": _cpuinfo("model name") or platform.processor() or platform.machine(),
        "cpu_flags": _cpu_flags(),
        "cpu_flags_checked": list(CPU_FLAGS),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ns_auto_dtype_cpu": str(resolve_dtype("auto", torch.device("cpu"), torch.float32)).replace("torch.", ""),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
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


# --------------------------------------------------------------------------- other processes
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
    wall time. ``cores`` stays None where /proc is not available, and for blocks shorter than
    ``min_wall_s`` (the counters tick every 10 ms, too coarse for a few milliseconds).
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


def contended(cores: float | None) -> bool:
    return (cores or 0.0) > MAX_OTHER_CORES


# --------------------------------------------------------------------------- load check
def load_average() -> dict:
    """The 1/5/15-minute load averages and the 1-minute value per core."""
    load1, load5, load15 = os.getloadavg()
    cores = os.cpu_count() or 1
    return {"load1": load1, "load5": load5, "load15": load15, "cores": cores, "load1_per_core": load1 / cores}


def check_load(allow_busy: bool, max_per_core: float = MAX_LOAD_PER_CORE) -> dict:
    """Print the load and exit (status 1, with the reason) when the machine is busy, unless ``allow_busy``.

    Busy: a 1-minute load average above ``max_per_core`` per core, or other processes using more than
    ``MAX_OTHER_CORES`` cores over a ``START_SAMPLE_S`` sample (the load average lags by a minute). When
    run_all.py has already checked (``HF_MUON_BENCH_LOAD_CHECKED`` set), its reading before the first script
    is the one that counts; this script's own reading is kept under ``"at_script_start"``.
    """
    parent = os.environ.get(PARENT_LOAD_ENV)
    if parent:
        load = json.loads(parent)
        load["at_script_start"] = load_average()
        load["checked_by"] = "run_all.py"
        print(f"load checked by run_all.py before the first script: {load['load1']:.2f} (1 min)")
        return load
    load = load_average()
    with OtherProcesses() as others:
        time.sleep(START_SAMPLE_S)
    load["max_per_core"] = max_per_core
    load["other_cores_at_start"] = others.cores
    load["busy"] = load["load1_per_core"] > max_per_core or contended(others.cores)
    load["allow_busy"] = allow_busy
    load["checked_by"] = "script"
    sampled = "" if others.cores is None else f"; other processes {others.cores:.2f} cores over {START_SAMPLE_S:g} s"
    print(
        f"load average {load['load1']:.2f} {load['load5']:.2f} {load['load15']:.2f} on {load['cores']} cores "
        f"({load['load1_per_core']:.2f} per core; limit {max_per_core} per core){sampled}"
    )
    if load["busy"] and not allow_busy:
        sys.exit(
            f"refusing to benchmark: 1-minute load {load['load1']:.2f} (limit {max_per_core * load['cores']:.2f} on "
            f"this machine) or other processes ({sampled.lstrip('; ') or 'not sampled'}; limit {MAX_OTHER_CORES} "
            "cores) say the machine is busy. Wait for it to be idle, or pass --allow-busy to run anyway (results "
            "are then marked busy)."
        )
    if load["busy"]:
        print("WARNING: the machine is busy; timings are marked busy=True and are not comparable", file=sys.stderr)
    return load
