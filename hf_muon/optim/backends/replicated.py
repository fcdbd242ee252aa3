"""Replicated parameters (DDP): every rank holds the same averaged gradients, hence the same updates.

Rank r orthogonalizes the jobs it owns (FLOP-balanced LPT owners, :mod:`.assign`; batched per shape), and one
``all_gather`` of the packed results per result dtype gives every rank every result. Results travel in the
Newton-Schulz compute dtype, so every world size computes bit-identical updates from the same inputs.

A non-finite matrix is seen only by its owner; the owner's verdict rides on the same ``all_gather`` (one extra
element per rank), so every rank raises the same :class:`.base.NonFiniteJob` before any weight is written.

At the first step (``replica_check``, on by default) one ``all_reduce`` of two scalars per matrix checks that the
ranks' matrices really are replicas (:func:`.agree.check_replicas`): a run whose ranks were never wrapped in DDP
would otherwise silently mix orthogonalized matrices of different models.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ...ns.batching import Job, run_jobs
from .agree import check_replicas
from .assign import assign_owners, ns_cost
from .base import BackendBase, CommStats, NonFiniteJob, agree_failed, compute_dtype, run_local


def orthogonalize_replicated(jobs: list[Job], group=None, batched: bool = True, stats: CommStats | None = None):
    """Each job on its owner, the results all-gathered. Each gather carries one more element per rank, 1 where
    that rank's share held a non-finite matrix: then (the failure path only) one ``all_reduce`` names the first
    such job and every rank raises :class:`.base.NonFiniteJob`. Cost on the normal path: that element, and one
    host read of the gathered flags per step."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    costs = [ns_cost(j.tensor.shape, j.config.steps) for j in jobs]
    owners = assign_owners(costs, world)
    mine = [i for i, o in enumerate(owners) if o == rank]
    results, failed = run_local([jobs[i] for i in mine], mine, batched)
    local = dict(zip(mine, results))
    if stats is not None:
        stats.ns_flops += sum(costs[i] for i in mine)
    dtypes = {compute_dtype(j) for j in jobs}
    out: list = [None] * len(jobs)
    flags = []
    for dtype in sorted(dtypes, key=str):  # one all_gather per result dtype (normally exactly one)
        idx = [i for i, j in enumerate(jobs) if compute_dtype(j) == dtype]
        per_rank = [[i for i in idx if owners[i] == r] for r in range(world)]
        sizes = [sum(jobs[i].tensor.numel() for i in ids) for ids in per_rank]
        width = max(sizes)
        if width == 0:
            continue
        device = jobs[idx[0]].tensor.device
        send = torch.zeros(width + 1, dtype=dtype, device=device)  # the last element: this rank's verdict
        if per_rank[rank]:
            flat = torch.cat([local[i].reshape(-1).to(dtype) for i in per_rank[rank]])
            send[: flat.numel()] = flat
        send[width] = float(failed is not None)
        recv = [torch.empty(width + 1, dtype=dtype, device=device) for _ in range(world)]
        dist.all_gather(recv, send, group=group)
        flags.append(torch.stack([r[width] for r in recv]))
        if stats is not None:
            stats.add(send.numel() * send.element_size() * (world - 1))
        for r, ids in enumerate(per_rank):
            offset = 0
            for i in ids:
                n = jobs[i].tensor.numel()
                out[i] = local[i] if r == rank else recv[r][offset : offset + n].view(jobs[i].tensor.shape)
                offset += n
    if flags and bool(torch.cat(flags).any()):  # every rank saw the same flags: all take the agreement
        bad = agree_failed(failed, len(jobs), group, flags[0].device)
        raise NonFiniteJob(bad, tuple(jobs[bad].tensor.shape))
    return out


def multi_rank(group=None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


class ReplicatedBackend(BackendBase):
    """Each matrix once, on its owner rank of ``group``; the results all-gathered."""

    def __init__(self, group=None, batched: bool = True, replica_check: bool = True):
        super().__init__(batched, replica_check)
        self.group = group
        self._replicas_checked = False

    def check_group(self, jobs):
        if not multi_rank(self.group):
            return None
        return self.group if self.group is not None else dist.group.WORLD

    def run(self, jobs: list[Job]):
        if not multi_rank(self.group):
            return run_jobs(jobs, batched=self.batched)
        if self.replica_check and not self._replicas_checked:
            self._replicas_checked = check_replicas(jobs, self.group)
        return orthogonalize_replicated(jobs, self.group, self.batched, self.comm_stats)


__all__ = ["ReplicatedBackend", "multi_rank", "orthogonalize_replicated"]
