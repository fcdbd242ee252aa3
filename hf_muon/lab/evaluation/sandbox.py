"""Run untrusted (model-generated) Python programs in resource-limited subprocesses, only on explicit opt-in.

Opt-in: pass ``allow_code_execution=True`` or set the environment variable ``HF_ALLOW_CODE_EVAL=1`` (the switch
evaluate's ``code_eval`` metric uses). Without either, :func:`run_program` raises
:class:`CodeExecutionNotAllowed` before anything runs.

Each program runs in its own ``subprocess``:

* ``python -I -`` (isolated mode: no ``PYTHON*`` environment variables, no user site-packages, the working
  directory is not put on ``sys.path``); the program text arrives on stdin, so nothing is written to disk;
* the working directory is a fresh, empty temporary directory that is deleted afterwards (also ``HOME`` and
  ``TMPDIR``);
* stdout is discarded and stderr goes to an unlinked temporary file (``RLIMIT_FSIZE`` bounds it too); the last
  2,000 characters of stderr are kept for diagnosis;
* a minimal environment: ``PATH``, ``LANG``/``LC_ALL``, ``HOME``, ``TMPDIR``, ``PYTHONHASHSEED=0`` and single-thread
  BLAS/OpenMP variables, nothing inherited (no tokens, no proxies);
* ``resource`` limits set in the child by ``preexec_fn`` before ``exec``: ``RLIMIT_AS`` (address space,
  ``memory_mb``), ``RLIMIT_CPU`` (CPU seconds; the kernel sends SIGXCPU then SIGKILL), ``RLIMIT_FSIZE`` (largest file
  it may write), ``RLIMIT_CORE=0``;
* its own session / process group, and a wall-clock ``timeout`` after which the whole group gets SIGKILL (catches
  ``sleep``-style hangs that use no CPU, and any children it forked).

Statuses: ``passed`` (exit 0), ``failed`` (non-zero exit, e.g. an ``AssertionError`` or a syntax error),
``timeout`` (wall clock or CPU limit), ``memory`` (``MemoryError``: an allocation hit the address-space limit),
``killed`` (ended by a signal it was not sent by us, e.g. the kernel OOM killer).

This is a *resource* sandbox, like the reference HumanEval harness and evaluate's ``code_eval``: it is not a
security boundary. The program runs as the current user, with network and filesystem access: enable it inside a
container or VM.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

ENV_FLAG = "HF_ALLOW_CODE_EVAL"

OPT_IN_MESSAGE = (
    "Refusing to execute model-generated code: code execution is off by default. It runs untrusted programs "
    "(in a subprocess with time and memory limits, but as your user, with network and filesystem access). "
    "To opt in, pass allow_code_execution=True (e.g. evaluate_model(..., allow_code_execution=True)) or set the "
    f"environment variable {ENV_FLAG}=1, preferably inside a container or VM."
)


class CodeExecutionNotAllowed(PermissionError):
    """Raised when code execution was requested without the explicit opt-in."""


def code_execution_allowed(allow_code_execution: bool = False) -> bool:
    """True when the caller opted in, or ``HF_ALLOW_CODE_EVAL=1`` is set."""
    return bool(allow_code_execution) or os.environ.get(ENV_FLAG, "") == "1"


def require_code_execution(allow_code_execution: bool = False) -> None:
    """Raise :class:`CodeExecutionNotAllowed` (with how to opt in) unless execution is allowed."""
    if not code_execution_allowed(allow_code_execution):
        raise CodeExecutionNotAllowed(OPT_IN_MESSAGE)


@dataclass(frozen=True)
class ExecutionResult:
    """``status``: ``passed`` / ``failed`` / ``timeout`` / ``memory`` / ``killed``; ``returncode`` < 0 is a signal."""

    status: str
    returncode: int | None
    duration_s: float
    stderr_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _limits(memory_mb: int, cpu_seconds: int, file_mb: int):
    mem = int(memory_mb) * 1024 * 1024
    fsize = int(file_mb) * 1024 * 1024

    def apply() -> None:  # runs in the child between fork and exec: only setrlimit calls, no imports
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _minimal_env(workdir: str) -> dict[str, str]:
    env = {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONHASHSEED": "0",
    }
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def run_program(
    program: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    cpu_seconds: int | None = None,
    file_mb: int = 16,
    allow_code_execution: bool = False,
) -> ExecutionResult:
    """Run ``program`` (Python source) in a sandboxed subprocess; see the module docstring for the limits.

    ``cpu_seconds`` defaults to ``ceil(timeout) + 1``. Raises :class:`CodeExecutionNotAllowed` without opt-in.
    """
    require_code_execution(allow_code_execution)
    if cpu_seconds is None:
        cpu_seconds = math.ceil(timeout) + 1
    start = time.monotonic()
    # stderr goes to an unlinked regular file, so RLIMIT_FSIZE also bounds what a runaway program can print
    with tempfile.TemporaryDirectory(prefix="hf_muon_exec_") as workdir, tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errf,
            cwd=workdir,
            env=_minimal_env(workdir),
            preexec_fn=_limits(memory_mb, cpu_seconds, file_mb),
            start_new_session=True,
            close_fds=True,
        )
        timed_out = False
        try:
            proc.communicate(program.encode("utf-8"), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:  # timed out (or interrupted): kill the whole process group, never leave it behind
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        size = errf.seek(0, os.SEEK_END)
        errf.seek(max(0, size - 2000))
        tail = errf.read().decode("utf-8", "replace")
    duration = time.monotonic() - start
    rc = proc.returncode
    if timed_out or rc == -signal.SIGXCPU:
        status = "timeout"
    elif rc == 0:
        status = "passed"
    elif any(m in tail for m in ("MemoryError", "Cannot allocate memory", "std::bad_alloc")):
        status = "memory"
    elif rc is not None and rc < 0:
        status = "killed"  # a signal we did not send (e.g. the kernel's OOM killer)
    else:
        status = "failed"
    return ExecutionResult(status=status, returncode=rc, duration_s=duration, stderr_tail=tail)


def run_programs(
    programs: Sequence[str],
    *,
    workers: int = 2,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    allow_code_execution: bool = False,
    progress: bool = False,
    desc: str = "execute",
) -> list[ExecutionResult]:
    """:func:`run_program` over ``programs`` with ``workers`` concurrent subprocesses; results in input order."""
    from tqdm.auto import tqdm

    require_code_execution(allow_code_execution)
    if not programs:
        return []

    def one(p: str) -> ExecutionResult:
        return run_program(p, timeout=timeout, memory_mb=memory_mb, allow_code_execution=True)

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        return list(tqdm(pool.map(one, programs), total=len(programs), desc=desc, disable=not progress, leave=False))


__all__ = [
    "ENV_FLAG",
    "CodeExecutionNotAllowed",
    "ExecutionResult",
    "code_execution_allowed",
    "require_code_execution",
    "run_program",
    "run_programs",
]
