"""Single process: every job runs here, batched by shape (:func:`hf_muon.ns.batching.run_jobs`)."""

from __future__ import annotations

from ...ns.batching import Job, run_jobs
from .base import CommStats


class LocalBackend:
    def __init__(self, batched: bool = True):
        self.batched = batched
        self.comm_stats = CommStats()

    def orthogonalize(self, jobs: list[Job]):
        return run_jobs(jobs, batched=self.batched)


__all__ = ["LocalBackend"]
