"""Sharded parameters (FSDP2 / DTensor): each matrix is assembled on its owner, orthogonalized, scattered back.

Row-sharded (``Shard(0)`` on a 1-D mesh; Moonlight's Algorithm 1 done with all-to-all like dion): one
``all_to_all`` sends each rank's row shard of job j to owner(j), the owner assembles and orthogonalizes the
full matrices, a second ``all_to_all`` returns each rank its rows of the result. 3-D expert stacks sharded on
the expert dim and replicated DTensors hold whole matrices: done locally. Updates travel to owners in their
own dtype (so the owner normalises exactly what one process would); results travel back in the NS compute
dtype. Plain (non-DTensor) jobs in the same step go to the replicated backend.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ...ns.batching import Job, run_jobs
from ..jobs import is_dtensor
from .assign import assign_owners, ns_cost
from .base import CommStats, compute_dtype
from .replicated import ReplicatedBackend


def _chunk_rows(rows: int, world: int) -> list[int]:
    """Rows per rank of a ``Shard(0)`` DTensor (torch.chunk semantics)."""
    c = -(-rows // world)
    return [max(0, min(c, rows - r * c)) for r in range(world)]


def orthogonalize_sharded(jobs: list[Job], batched: bool = True, stats: CommStats | None = None):
    """Jobs whose tensors are ``DTensor``s with ``Shard(0)`` on one 1-D mesh."""
    from torch.distributed.tensor import DTensor, Shard

    out: list = [None] * len(jobs)
    rowwise = []
    local_jobs = []
    for i, job in enumerate(jobs):
        t = job.tensor
        if len(t.placements) != 1 or t.device_mesh.ndim != 1:
            raise NotImplementedError(
                f"hf_muon supports DTensor parameters sharded on a 1-D mesh (FSDP2); got placements {t.placements} "
                f"on a {t.device_mesh.ndim}-D mesh")
        pl = t.placements[0]
        if pl.is_replicate() or (isinstance(pl, Shard) and t.ndim == 3 and pl.dim == 0):
            local_jobs.append(i)  # whole matrices live on this rank (replicated, or experts split by expert)
        elif isinstance(pl, Shard) and pl.dim == t.ndim - 2:
            rowwise.append(i)
        else:
            raise NotImplementedError(f"hf_muon cannot orthogonalize a DTensor with placement {pl} (shape "
                                      f"{tuple(t.shape)}); use FSDP2's default Shard(0)")
    if local_jobs:
        res = run_jobs([Job(jobs[i].tensor.to_local(), jobs[i].config) for i in local_jobs], batched=batched)
        for i, r in zip(local_jobs, res):
            t = jobs[i].tensor
            out[i] = DTensor.from_local(r, t.device_mesh, t.placements, shape=t.shape, stride=t.stride())
    if not rowwise:
        return out
    mesh = jobs[rowwise[0]].tensor.device_mesh
    pg = mesh.get_group()
    world, rank = dist.get_world_size(pg), dist.get_rank(pg)
    owners = assign_owners([ns_cost(jobs[i].tensor.shape, jobs[i].config.steps) for i in rowwise], world)
    kinds = {i: (jobs[i].tensor.dtype, compute_dtype(jobs[i])) for i in rowwise}
    for in_dtype, dtype in sorted(set(kinds.values()), key=str):
        sel = [(k, i) for k, i in enumerate(rowwise) if kinds[i] == (in_dtype, dtype)]
        _exchange_rowwise(jobs, sel, owners, world, rank, pg, in_dtype, dtype, batched, stats, out)
    return out


def _all_to_all(send_chunks: list[list[torch.Tensor]], recv_sizes: list[int], dtype, device, pg, stats):
    """One ``all_to_all_single``: ``send_chunks[r]`` (flattened, cast to ``dtype``) go to rank r; returns the
    received flat pieces, one per source rank."""
    flat = [c.reshape(-1).to(dtype) for chunks in send_chunks for c in chunks]
    send = torch.cat(flat or [torch.empty(0, dtype=dtype, device=device)])
    send_sizes = [sum(c.numel() for c in chunks) for chunks in send_chunks]
    recv = torch.empty(sum(recv_sizes), dtype=dtype, device=device)
    dist.all_to_all_single(recv, send, output_split_sizes=recv_sizes, input_split_sizes=send_sizes, group=pg)
    if stats is not None:
        stats.add((send.numel() - send_sizes[dist.get_rank(pg)]) * send.element_size())
    return list(torch.split(recv, recv_sizes))


def _exchange_rowwise(jobs, sel, owners, world, rank, pg, in_dtype, dtype, batched, stats, out):
    """Gather rows to owners in the update's own dtype (so the owner normalises exactly what a single
    process would), orthogonalize, and return result rows in the compute dtype."""
    from torch.distributed.tensor import DTensor

    device = jobs[sel[0][1]].tensor.to_local().device
    rows = {i: _chunk_rows(jobs[i].tensor.shape[0], world) for _, i in sel}
    cols = {i: jobs[i].tensor.shape[1] for _, i in sel}
    for _, i in sel:
        if jobs[i].tensor.to_local().shape[0] != rows[i][rank]:
            raise RuntimeError(f"unexpected Shard(0) layout for shape {tuple(jobs[i].tensor.shape)}")
    by_owner = [[i for k, i in sel if owners[k] == r] for r in range(world)]
    mine = by_owner[rank]

    def blocks(piece, ids, nrows):  # a flat piece from one rank -> its row blocks, one per job in ids
        out_, offset = [], 0
        for i in ids:
            n = nrows(i) * cols[i]
            out_.append(piece[offset: offset + n].view(nrows(i), cols[i]))
            offset += n
        return out_

    # 1) gather: my row shard of every job -> its owner; the owner stacks the shards rank by rank
    pieces = _all_to_all([[jobs[i].tensor.to_local() for i in by_owner[r]] for r in range(world)],
                         [sum(rows[i][src] * cols[i] for i in mine) for src in range(world)], in_dtype, device, pg,
                         stats)
    parts = [blocks(pieces[src], mine, lambda i, s=src: rows[i][s]) for src in range(world)]
    full = [torch.cat([parts[src][k] for src in range(world)], 0) for k in range(len(mine))]
    result = run_jobs([Job(f, jobs[i].config) for f, i in zip(full, mine)], batched=batched)
    # 2) scatter back: the owner sends each rank its rows of each result
    starts = {i: [sum(rows[i][:d]) for d in range(world)] for i in mine}
    pieces = _all_to_all([[r[starts[i][d]: starts[i][d] + rows[i][d]] for r, i in zip(result, mine)]
                          for d in range(world)],
                         [sum(rows[i][rank] * cols[i] for i in by_owner[src]) for src in range(world)], dtype, device,
                         pg, stats)
    for src in range(world):
        for local, i in zip(blocks(pieces[src], by_owner[src], lambda i: rows[i][rank]), by_owner[src]):
            t = jobs[i].tensor
            out[i] = DTensor.from_local(local, t.device_mesh, t.placements, shape=t.shape, stride=t.stride())


class ShardedBackend:
    """DTensor jobs through the sharded exchange; plain jobs through ``plain`` (replicated or local)."""

    def __init__(self, plain=None, batched: bool = True):
        self.batched = batched
        self.plain = plain if plain is not None else ReplicatedBackend(None, batched)
        self.comm_stats = self.plain.comm_stats

    def orthogonalize(self, jobs: list[Job]):
        out: list = [None] * len(jobs)
        dt = [i for i, j in enumerate(jobs) if is_dtensor(j.tensor)]
        plain = [i for i, j in enumerate(jobs) if not is_dtensor(j.tensor)]
        if dt:
            for i, r in zip(dt, orthogonalize_sharded([jobs[i] for i in dt], self.batched, self.comm_stats)):
                out[i] = r
        if plain:
            for i, r in zip(plain, self.plain.orthogonalize([jobs[i] for i in plain])):
                out[i] = r
        return out


__all__ = ["ShardedBackend", "orthogonalize_sharded"]
