"""Single process: every job runs here, batched by shape (:func:`hf_muon.ns.batching.run_jobs`)."""

from __future__ import annotations

from ...ns.batching import Job, run_jobs
from .base import BackendBase


class LocalBackend(BackendBase):
    def run(self, jobs: list[Job]):
        return run_jobs(jobs, batched=self.batched)


__all__ = ["LocalBackend"]
