"""Sharded parameters (DTensor: FSDP2, HSDP, tensor parallel, FSDP2 + TP, experts): each matrix assembled on one
owner, orthogonalized once, its pieces sent back.

Every DTensor job is read through :mod:`.layout`: the mesh dims that shard a matrix dim are its *gather* dims
(FSDP2's rows, TP's columns or rows, both under FSDP2 + TP, an expert stack's inner dim); ``Replicate`` dims
(HSDP's replicate dim: the gradients are already reduced over it) and an expert stack's expert dim are left
alone. The ranks that differ only in their gather coordinates form the exchange group. Within it, FLOP-balanced
owners (LPT over :func:`hf_muon.ns.cost.ns_flops`, loads carried across the groups of a step) receive every
rank's piece of their matrices in one ``all_to_all``, assemble and orthogonalize them (batched by shape), and a
second ``all_to_all`` returns each rank its piece of each result. Jobs without gather dims (experts split by
expert, replicated matrices) run where they are. Results travel in the Newton-Schulz compute dtype; the
pieces travel to owners in it too when it is a 16-bit type (bf16, the default on CUDA: each matrix crosses the
wire twice at 2 bytes per element), else in the update's own dtype (fp32 NS: bit-identical to one process).

Several meshes in one optimizer (experts on the full mesh and the rest on a sub-mesh, as transformers' Trainer
builds) are exchanged group by group, in one order on every rank. Before the first exchange every rank checks
its layouts and all ranks agree on the job list (:mod:`.agree`): an unsupported placement or a mismatch raises
on every rank at once, naming the parameter, never a hang. Plain (non-DTensor) jobs of the same optimizer go to
``plain`` (the replicated or the local backend).

A matrix holding NaN/±inf is seen by the rank that orthogonalizes it (its owner, or the rank holding it whole);
that rank still takes every exchange (zeros stand in), and before anything is returned the ranks agree on it:
every rank raises the same :class:`.base.NonFiniteJob`, no weight is written. Cost: when the step's DTensor jobs
form one exchange over every rank (FSDP2 on one mesh), one more element per rank in each returning
``all_to_all`` and one host read of those flags per step (the ``all_reduce`` naming the job only on failure);
otherwise (HSDP replicas, several meshes, experts held whole, a local plain backend) one int64 ``all_reduce``
per step (:func:`.base.agree_failed`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ...ns.batching import Job
from ...ns.newton_schulz import NonFiniteInput
from ..jobs import is_dtensor
from .assign import assign_owners, ns_cost
from .base import BackendBase, NonFiniteJob, agree_failed, compute_dtype, first_failed, run_local
from .layout import LayoutError, assembled_shape, classify, describe, gather_group, pieces, place, take
from .replicated import ReplicatedBackend


def gather_dtype(job) -> torch.dtype:
    """The dtype a job's pieces travel to its owner in: the NS compute dtype when it is a 16-bit type (the
    rounding is below that NS's own error, and the bytes halve), else the update's own dtype (the owner then
    normalises exactly what one process would: bit-identical to one process)."""
    ns = compute_dtype(job)
    return ns if ns.itemsize < 4 else job.tensor.dtype


def _experts(t) -> int | None:
    return t.to_local().shape[0] if t.ndim == 3 else None


def _all_to_all(
    send_chunks: list[list[torch.Tensor]], recv_sizes: list[int], dtype, device, pg, stats, flag: float | None = None
):
    """One ``all_to_all_single``: ``send_chunks[r]`` (flattened, cast to ``dtype``) go to rank r; returns the
    received flat pieces, one per source rank. ``flag``: one more element to every rank (this rank's verdict);
    then returns (pieces, the flags received, one per source rank)."""
    if flag is not None:
        mark = torch.full((1,), flag, dtype=dtype, device=device)
        send_chunks = [chunks + [mark] for chunks in send_chunks]
        recv_sizes = [n + 1 for n in recv_sizes]
    flat = [c.reshape(-1).to(dtype) for chunks in send_chunks for c in chunks]
    send = torch.cat(flat or [torch.empty(0, dtype=dtype, device=device)])
    send_sizes = [sum(c.numel() for c in chunks) for chunks in send_chunks]
    recv = torch.empty(sum(recv_sizes), dtype=dtype, device=device)
    dist.all_to_all_single(recv, send, output_split_sizes=recv_sizes, input_split_sizes=send_sizes, group=pg)
    if stats is not None:
        stats.add((send.numel() - send_sizes[dist.get_rank(pg)]) * send.element_size())
    got = list(torch.split(recv, recv_sizes))
    if flag is None:
        return got
    return [g[:-1] for g in got], torch.stack([g[-1] for g in got])


def _split(flat: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(torch.split(flat, sizes)) if sizes else []


class ShardedBackend(BackendBase):
    """DTensor jobs through the sharded exchange; plain jobs through ``plain`` (replicated or local)."""

    def __init__(self, plain=None, batched: bool = True, replica_check: bool = True):
        super().__init__(batched, replica_check)
        self.plain = plain if plain is not None else ReplicatedBackend(None, batched, replica_check)
        self.plain.comm_stats = self.comm_stats  # one record of this optimizer's traffic
        self._plans: dict = {}
        self._failed: int | None = None

    @property
    def replica_check(self):
        return self._replica_check

    @replica_check.setter
    def replica_check(self, value):
        self._replica_check = value
        if hasattr(self, "plain"):
            self.plain.replica_check = value

    # ------------------------------------------------------------------ agreement
    def check_group(self, jobs):
        meshes = [j.tensor.device_mesh for j in jobs if is_dtensor(j.tensor)]
        if not meshes:
            return self.plain.check_group(jobs)
        widest = max(meshes, key=lambda m: m.mesh.numel())
        if widest.mesh.numel() == dist.get_world_size():
            return dist.group.WORLD
        return gather_group(_whole_mesh(widest))[0]  # a mesh that does not span the world (pipeline stages)

    def problem(self, jobs):
        labels = None
        for i, job in enumerate(jobs):
            t = job.tensor
            if not is_dtensor(t):
                continue
            try:
                layout = classify(t)
                mine = pieces(layout, [tuple(t.device_mesh.get_coordinate())], _experts(t))[0]
                if tuple(t.to_local().shape) != mine.shape:
                    raise LayoutError(
                        f"{describe(t)}: this rank's local shard is {tuple(t.to_local().shape)}, but "
                        f"the placements give {mine.shape} (torch.chunk semantics)"
                    )
            except LayoutError as e:
                labels = labels or self.names(jobs)
                return f"{labels[i]}: {e}"
        return None

    # ------------------------------------------------------------------ the step
    def run(self, jobs: list[Job]):
        out: list = [None] * len(jobs)
        dt = [i for i, j in enumerate(jobs) if is_dtensor(j.tensor)]
        plain = [i for i, j in enumerate(jobs) if not is_dtensor(j.tensor)]
        self._failed = None  # this rank's first non-finite job (index into the dt list), set by _run_dtensors
        self._flags = None  # the verdicts every rank sent with the exchange, when it spans every rank (folded)
        failed = None
        if dt:
            for i, r in zip(dt, self._run_dtensors([jobs[i] for i in dt])):
                out[i] = r
            failed = None if self._failed is None else dt[self._failed]
        if plain:
            sub = [jobs[i] for i in plain]
            try:
                res = self.plain.run(sub)
            except NonFiniteJob as e:  # agreed by the replicated backend over its group: every rank is here
                raise NonFiniteJob(plain[e.job], tuple(jobs[plain[e.job]].tensor.shape)) from None
            except NonFiniteInput:  # the local backend (distributed="none"): fold into the DTensor agreement
                if not dt:
                    raise
                res, f = run_local(sub, plain, self.batched)
                failed = first_failed(failed, f)
            for i, r in zip(plain, res):
                out[i] = r
        folded = self._flags is not None and not (plain and not isinstance(self.plain, ReplicatedBackend))
        if dt and (not folded or bool(torch.cat(self._flags).any())):  # folded: the all_reduce on failure only
            bad = agree_failed(failed, len(jobs), self.check_group(jobs), jobs[dt[0]].tensor.to_local().device)
            if bad is not None:
                raise NonFiniteJob(bad, tuple(jobs[bad].tensor.shape))
        return out

    def _local(self, jobs: list[Job], ids: list[int]):
        res, failed = run_local(jobs, ids, self.batched)
        self._failed = first_failed(self._failed, failed)
        return res

    def _run_dtensors(self, jobs: list[Job]):
        from torch.distributed.tensor import DTensor

        out: list = [None] * len(jobs)
        layouts = []
        for job in jobs:
            try:
                layouts.append(classify(job.tensor))
            except LayoutError as e:  # the agreement reports it first; this keeps a direct call honest
                raise LayoutError(f"{self.names(jobs)[len(layouts)]}: {e}") from None
        here = [i for i, lay in enumerate(layouts) if not lay.gather]
        if here:
            res = self._local([Job(jobs[i].tensor.to_local(), jobs[i].config) for i in here], here)
            for i, r in zip(here, res):
                t = jobs[i].tensor
                self.comm_stats.ns_flops += ns_cost(r.shape, jobs[i].config.steps)
                out[i] = DTensor.from_local(r, t.device_mesh, t.placements, shape=t.shape, stride=t.stride())
        groups: dict = {}  # exchange groups by their ranks: meshes over the same ranks exchange together
        for i, lay in enumerate(layouts):
            if lay.gather:
                pg, ranks, coord_of = gather_group(lay)
                groups.setdefault(tuple(sorted(ranks)), (pg, ranks, []))[2].append((i, coord_of))
        loads: dict = {}  # global rank -> NS FLOPs owned so far in this step
        # one exchange over every rank: the verdicts ride on its returning all_to_alls (one element per rank)
        fold = len(groups) == 1 and len(next(iter(groups))) == dist.get_world_size()
        self._flags = [] if fold else None
        for key in sorted(groups):
            self._exchange(jobs, *groups[key], layouts, out, loads)
        return out

    def _plan(self, layout, coords, experts):
        key = (layout.key, layout.placements, layout.shape, experts, tuple(coords))
        if key not in self._plans:
            self._plans[key] = pieces(layout, coords, experts)
        return self._plans[key]

    def _exchange(self, jobs, pg, ranks, members, layouts, out, loads):
        """One exchange group (``members``: (job index, coordinate of each global rank on that job's mesh)):
        pieces to owners, orthogonalize, pieces back."""
        from torch.distributed.tensor import DTensor

        world, me = len(ranks), dist.get_rank(pg)
        ids = [i for i, _ in members]
        plan = {
            i: self._plan(layouts[i], [coord_of[r] for r in ranks], _experts(jobs[i].tensor)) for i, coord_of in members
        }
        full_shape = {i: assembled_shape(layouts[i], _experts(jobs[i].tensor)) for i in ids}
        costs = [ns_cost(full_shape[i], jobs[i].config.steps) for i in ids]
        start = [loads.get(r, 0.0) for r in ranks]
        owners = dict(zip(ids, assign_owners(costs, world, start)))
        for r, load in zip(ranks, start):
            loads[r] = load
        self.comm_stats.ns_flops += sum(c for i, c in zip(ids, costs) if owners[i] == me)
        device = jobs[ids[0]].tensor.to_local().device
        by_dtype: dict = {}
        for i in ids:
            by_dtype.setdefault((gather_dtype(jobs[i]), compute_dtype(jobs[i])), []).append(i)
        for in_dtype, dtype in sorted(by_dtype, key=str):  # one pair of all_to_alls per dtype pair (normally one)
            sel = by_dtype[(in_dtype, dtype)]
            by_owner = [[i for i in sel if owners[i] == r] for r in range(world)]
            mine = by_owner[me]
            # 1) every rank's piece of each job -> the job's owner, which assembles the matrices
            got = _all_to_all(
                [[jobs[i].tensor.to_local() for i in by_owner[r]] for r in range(world)],
                [sum(plan[i][s].numel for i in mine) for s in range(world)],
                in_dtype,
                device,
                pg,
                self.comm_stats,
            )
            full = {i: torch.empty(full_shape[i], dtype=in_dtype, device=device) for i in mine}
            for s in range(world):
                for i, chunk in zip(mine, _split(got[s], [plan[i][s].numel for i in mine])):
                    place(full[i], plan[i][s], chunk)
            result = self._local([Job(full[i], jobs[i].config) for i in mine], mine)
            # 2) each rank's piece of each result back from the owner
            back = _all_to_all(
                [[take(r, plan[i][d]) for r, i in zip(result, mine)] for d in range(world)],
                [sum(plan[i][me].numel for i in by_owner[s]) for s in range(world)],
                dtype,
                device,
                pg,
                self.comm_stats,
                None if self._flags is None else float(self._failed is not None),
            )
            if self._flags is not None:
                back, flags = back
                self._flags.append(flags)
            for s in range(world):
                for i, chunk in zip(by_owner[s], _split(back[s], [plan[i][me].numel for i in by_owner[s]])):
                    t = jobs[i].tensor
                    out[i] = DTensor.from_local(
                        chunk.view(plan[i][me].shape), t.device_mesh, t.placements, shape=t.shape, stride=t.stride()
                    )


def _whole_mesh(mesh):
    """A layout whose gather group is every rank of ``mesh``."""
    from .layout import Layout

    return Layout(mesh, (), (), tuple(range(mesh.ndim)))


__all__ = ["ShardedBackend"]
