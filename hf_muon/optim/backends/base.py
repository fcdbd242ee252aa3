"""The orthogonalize backend: the one override point of :class:`hf_muon.Muon`.

A backend is an object with ``orthogonalize(jobs) -> results`` (one result per :class:`hf_muon.ns.batching.Job`,
shaped like its tensor, in the NS compute dtype) and a :class:`CommStats`. It is chosen once, when the optimizer
is built (:func:`hf_muon.optim.backends.select_backend`), or passed in (``Muon(..., backend=MyBackend())``).
Every backend computes through the shared batching engine (:func:`hf_muon.ns.batching.run_jobs`), so a new
variant plugs in by deciding *where* each job runs, not how.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from ...ns.batching import Job
from ...ns.newton_schulz import resolve_dtype
from ..jobs import is_dtensor


@dataclass
class CommStats:
    """Bytes this rank sent through hf_muon's own collectives (not the DDP/FSDP gradient traffic)."""

    bytes_sent: int = 0
    calls: int = 0
    per_rank_cost: list = field(default_factory=list)

    def add(self, nbytes: int):
        self.bytes_sent += int(nbytes)
        self.calls += 1


class Backend(Protocol):
    comm_stats: CommStats

    def orthogonalize(self, jobs: list[Job]) -> list[torch.Tensor]: ...


def compute_dtype(job: Job) -> torch.dtype:
    t = job.tensor.to_local() if is_dtensor(job.tensor) else job.tensor
    return resolve_dtype(job.config.dtype, t.device, t.dtype)


__all__ = ["Backend", "CommStats", "compute_dtype"]
