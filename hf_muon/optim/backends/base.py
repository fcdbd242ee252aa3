"""The orthogonalize backend: the one override point of :class:`hf_muon.Muon`.

A backend is an object with ``orthogonalize(jobs) -> results`` (one result per :class:`hf_muon.ns.batching.Job`,
shaped like its tensor, in the NS compute dtype) and a :class:`CommStats`. It is chosen once, when the optimizer
is built (:func:`hf_muon.optim.backends.select_backend`), or passed in (``Muon(..., backend=MyBackend())``).
Every backend computes through the shared batching engine (:func:`hf_muon.ns.batching.run_jobs`), so a new
variant plugs in by deciding *where* each job runs, not how.

:class:`BackendBase` holds what the built-in backends share: the NS dtype decided once per optimizer (agreed
across ranks, :mod:`.agree`) and written into every job before it runs, the first-step agreement on the job list,
and the optional ``bind(optimizer)`` (parameter names for error messages, ``config.replica_check``, the dtype
decision in ``optimizer.state_dict()`` under :data:`STATE_KEY`).

A matrix that reaches orthogonalization holding NaN/±inf (its state was non-finite before the step) is found
only on the rank that orthogonalizes it. Backends that communicate therefore never raise from their own share
(:func:`run_local`: zeros stand in, every collective of the step is still taken) and agree the verdict before
returning anything: every rank of the group raises the same :class:`NonFiniteJob`, and no rank writes a weight.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.distributed as dist

from ...ns.batching import Job, run_jobs
from ...ns.newton_schulz import NonFiniteInput, cpu_has_fast_bf16, resolve_dtype
from ..jobs import is_dtensor
from .agree import agree, signature

STATE_KEY = "hf_muon_backend"


@dataclass
class CommStats:
    """What this rank did through hf_muon's own collectives (not the DDP/FSDP gradient traffic), cumulative:
    bytes sent (ring volumes: what leaves this rank), collective calls, optimizer steps, and the Newton-Schulz
    FLOPs this rank ran (:func:`hf_muon.ns.cost.ns_flops` of the matrices it owned)."""

    bytes_sent: int = 0
    calls: int = 0
    steps: int = 0
    ns_flops: float = 0.0

    def add(self, nbytes: int):
        self.bytes_sent += int(nbytes)
        self.calls += 1

    def per_step(self) -> dict:
        n = max(self.steps, 1)
        return {"bytes_sent": self.bytes_sent / n, "calls": self.calls / n, "ns_flops": self.ns_flops / n}


class Backend(Protocol):
    comm_stats: CommStats

    def orthogonalize(self, jobs: list[Job]) -> list[torch.Tensor]: ...


class NonFiniteJob(NonFiniteInput):
    """Job ``job`` of the step's list reached orthogonalization holding NaN/±inf, on this rank or (agreed across
    the group) on another; raised on every rank of the group, before any result is returned."""

    def __init__(self, job: int, shape: tuple):
        super().__init__(job, shape)
        self.job = job


def run_local(jobs: list[Job], ids: list[int], batched: bool = True) -> tuple[list[torch.Tensor], int | None]:
    """``run_jobs`` on this rank's share (``ids``: the jobs' indices in the step's list). A matrix holding NaN/±inf
    does not raise here: zeros stand in for the results, so this rank still takes every collective of the step,
    and the index of the first such job is returned for the agreement (:func:`agree_failed`)."""
    try:
        return run_jobs(jobs, batched=batched), None
    except NonFiniteInput:  # the failure path only: find which job (one isfinite per owned matrix)
        k = next((k for k, j in enumerate(jobs) if not bool(torch.isfinite(j.tensor).all())), 0)
        zeros = [torch.zeros(j.tensor.shape, dtype=j.config.dtype, device=j.tensor.device) for j in jobs]
        return zeros, ids[k]


def first_failed(*failed: int | None) -> int | None:
    return min((f for f in failed if f is not None), default=None)


def agree_failed(failed: int | None, n: int, group, device) -> int | None:
    """The lowest non-finite job index over the ranks of ``group`` (None: no rank failed). Cost: one int64
    ``all_reduce`` (MIN) over ``group``."""
    t = torch.tensor([n if failed is None else failed], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group)
    agreed = int(t.item())
    return None if agreed >= n else agreed


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if is_dtensor(t) else t


def compute_dtype(job: Job) -> torch.dtype:
    t = local_tensor(job.tensor)
    return resolve_dtype(job.config.dtype, t.device, t.dtype)


def pin_dtypes(jobs: list[Job], cpu_bf16: bool | None) -> list[Job]:
    """Each job with its NS dtype resolved now (``"auto"`` through the optimizer's one decision)."""
    out = []
    for job in jobs:
        t = local_tensor(job.tensor)
        dtype = resolve_dtype(job.config.dtype, t.device, t.dtype, cpu_bf16)
        out.append(job if job.config.dtype == dtype else Job(job.tensor, dataclasses.replace(job.config, dtype=dtype)))
    return out


class BackendBase:
    """``orthogonalize`` = agree (when this step communicates) → pin the NS dtype → :meth:`run`."""

    def __init__(self, batched: bool = True, replica_check: bool = True):
        self.batched = batched
        self.replica_check = replica_check
        self.comm_stats = CommStats()
        self.cpu_bf16: bool | None = None  # what ns_dtype="auto" means on CPU for this optimizer (None: undecided)
        self._agreed: int | None = None  # signature of the job list last agreed on
        self.dtypes: list[str] = []  # the NS compute dtypes of the last step
        self._optimizer = None

    # ------------------------------------------------------------------ subclass hooks
    def check_group(self, jobs: list[Job]):
        """The group whose ranks must agree before this step's collectives; None when the step is local."""
        return None

    def problem(self, jobs: list[Job]) -> str | None:
        """A layout error this rank sees in ``jobs`` (reported through the agreement, so all ranks raise)."""
        return None

    def run(self, jobs: list[Job]) -> list[torch.Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ the step
    def orthogonalize(self, jobs: list[Job]) -> list[torch.Tensor]:
        if not jobs:
            return []
        group = self.check_group(jobs)
        if group is not None:
            sig = signature(jobs)
            if sig != self._agreed:
                decided = agree(jobs, group, self.problem(jobs), self.cpu_bf16)
                self.cpu_bf16 = decided if self.cpu_bf16 is None else self.cpu_bf16
                self._agreed = sig
        elif self.cpu_bf16 is None:
            self.cpu_bf16 = cpu_has_fast_bf16()
        self.comm_stats.steps += 1
        jobs = pin_dtypes(jobs, self.cpu_bf16)
        self.dtypes = sorted({str(j.config.dtype).replace("torch.", "") for j in jobs})
        return self.run(jobs)

    # ------------------------------------------------------------------ the decision, saved and restored
    @property
    def cpu_auto_dtype(self) -> str | None:
        """What ``ns_dtype="auto"`` resolves to on CPU for this optimizer (CUDA: bfloat16; float64 inputs stay
        float64); None until the first step decides it."""
        return None if self.cpu_bf16 is None else ("bfloat16" if self.cpu_bf16 else "float32")

    @property
    def ns_dtype(self) -> str | None:
        """The NS compute dtype(s) of the last step's matrices (e.g. ``"float32"``), None before the first."""
        return ",".join(self.dtypes) if self.dtypes else None

    def state_dict(self) -> dict:
        return {"cpu_ns_dtype": self.cpu_auto_dtype}

    def load_state_dict(self, state: dict) -> None:
        saved = (state or {}).get("cpu_ns_dtype")
        if saved is not None:
            self.cpu_bf16 = saved == "bfloat16"

    def bind(self, optimizer) -> None:
        """Called once by the optimizer that owns this backend: names for error messages, its
        ``config.replica_check``, and the NS dtype decision saved in / restored from its ``state_dict()``."""
        self._optimizer = weakref.ref(optimizer)
        config = getattr(optimizer, "config", None)
        if config is not None and hasattr(config, "replica_check"):
            self.replica_check = bool(config.replica_check)

        def save(opt, sd):
            sd[STATE_KEY] = self.state_dict()
            return sd

        def load(opt, sd):
            if STATE_KEY in sd:
                sd = dict(sd)
                self.load_state_dict(sd.pop(STATE_KEY))
            return sd

        optimizer.register_state_dict_post_hook(save)
        optimizer.register_load_state_dict_pre_hook(load)

    def names(self, jobs: list[Job]) -> list[str]:
        """A label per job: the parameter's name when bound to an optimizer whose stepped parameters line up with
        ``jobs``, else the job's position."""
        opt = self._optimizer() if self._optimizer is not None else None
        if opt is not None:
            names = [
                (g.get("param_names") or [None] * len(g["params"]))[i] or f"param_groups[{gi}][{i}]"
                for gi, g in enumerate(opt.param_groups)
                if g.get("use_muon", True)
                for i, p in enumerate(g["params"])
                if p.grad is not None
            ]
            if len(names) == len(jobs):
                return [f"Muon parameter {n!r}" for n in names]
        return [f"Muon matrix #{i} of this step" for i in range(len(jobs))]


__all__ = [
    "STATE_KEY",
    "Backend",
    "BackendBase",
    "CommStats",
    "NonFiniteJob",
    "agree_failed",
    "compute_dtype",
    "first_failed",
    "local_tensor",
    "pin_dtypes",
    "run_local",
]
