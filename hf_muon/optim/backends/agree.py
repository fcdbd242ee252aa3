"""What the ranks must agree on before hf_muon's own collectives run, checked in one small collective.

* **The job list** (count, global shapes, DTensor placements and meshes, input dtypes, NS settings): every rank
  hashes its own and one ``all_gather`` of a few int64s compares them, before any exchange. A rank whose
  matrices or layouts differ (another model, another sharding plan, a layout error only it can see, such as a
  local shard of an unexpected shape) makes *every* rank raise, with each rank's description, instead of one rank
  entering an ``all_to_all`` alone and hanging.
* **The Newton-Schulz dtype**: ``ns_dtype="auto"`` on CPU depends on the CPU (:func:`hf_muon.ns.newton_schulz.
  cpu_has_fast_bf16`); rank 0's answer rides on the same ``all_gather`` and every rank uses it, so the result
  dtypes (and the dtype-grouped collectives) match on mixed machines. Decided once per optimizer (kept in the
  backend's ``state_dict``).
* **Replicas** (:func:`check_replicas`, the divergent-gradient check): ranks that share orthogonalized matrices as
  replicas (DDP) must hold the same gradients. At the first step one ``all_reduce`` of two scalars per matrix
  (sum and sum of squares, compared by MAX and MIN) finds ranks that train different models on different batches
  (a launcher started a process group but nothing wrapped the model in DDP) and stops with the fix.
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist

from ...ns.newton_schulz import cpu_has_fast_bf16
from ..jobs import is_dtensor
from .layout import LayoutError


class DisagreementError(RuntimeError):
    """Ranks hold different Muon work where they must hold the same."""


def job_text(job) -> str:
    """One job as every rank must see it (no rank-local facts: local shard shapes legitimately differ)."""
    t = job.tensor
    cfg = job.config.key()
    if is_dtensor(t):
        mesh = t.device_mesh
        return (
            f"dtensor{tuple(t.shape)}:{t.dtype}:{tuple(t.placements)}:{tuple(mesh.mesh.shape)}:"
            f"{tuple(mesh.mesh_dim_names or ())}:{cfg}"
        )
    return f"tensor{tuple(t.shape)}:{t.dtype}:{cfg}"


def signature(jobs) -> int:
    h = hashlib.blake2b("\n".join(job_text(j) for j in jobs).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little", signed=True)


def _device(jobs):
    t = jobs[0].tensor
    return (t.to_local() if is_dtensor(t) else t).device


def agree(jobs, group, problem: str | None = None, cpu_bf16: bool | None = None) -> bool:
    """One ``all_gather`` over ``group``: the job lists must match and no rank may report a ``problem`` (a layout
    error found locally). Returns rank 0's NS dtype decision (``cpu_bf16``, or its CPU's answer when undecided),
    which every rank then uses."""
    device = _device(jobs)
    mine = cpu_has_fast_bf16() if cpu_bf16 is None else cpu_bf16
    row = torch.tensor(
        [signature(jobs), len(jobs), int(problem is not None), int(mine)], dtype=torch.int64, device=device
    )
    world = dist.get_world_size(group)
    rows = [torch.empty_like(row) for _ in range(world)]
    dist.all_gather(rows, row, group=group)
    table = torch.stack(rows).cpu().tolist()
    bad = [r for r, t in enumerate(table) if t[2]]
    differ = [r for r, t in enumerate(table) if t[:2] != table[0][:2]]
    if bad or differ:
        # every rank is here (they all saw the same table): one more collective to name what differs
        note = problem or f"{len(jobs)} Muon matrices: " + "; ".join(job_text(j) for j in jobs[:4]) + (
            " ..." if len(jobs) > 4 else ""
        )
        notes: list = [None] * world
        dist.all_gather_object(notes, note, group=group)
        if bad:
            same = len({notes[r] for r in bad}) == 1
            lines = (
                [f"ranks {', '.join(map(str, bad))}: {notes[bad[0]]}"]
                if same and len(bad) > 1
                else [f"rank {r}: {notes[r]}" for r in bad]
            )
            raise LayoutError(
                "hf_muon cannot orthogonalize this step's sharded matrices (no weight was updated):\n  "
                + "\n  ".join(lines)
            )
        lines = [f"rank {r}: {notes[r]}" for r in [0] + differ]
        raise DisagreementError(
            "hf_muon: the ranks disagree on the Muon matrices of this step (no weight was updated). Every rank of the "
            "optimizer's process group must step the same Muon parameters with the same shapes, DTensor layouts "
            "and settings (same model, routing and sharding plan on every rank):\n  " + "\n  ".join(lines)
        )
    return bool(table[0][3])


REPLICA_TOL = 1e-5

REPLICA_HINT = (
    "The ranks are training different models: a process group exists, so hf_muon shares each orthogonalized "
    "matrix between them as DDP replicas, but their gradients were never averaged (nothing wrapped the model in "
    "DistributedDataParallel). Fixes: transformers / TRL on CPU: pass --use_cpu true (TrainingArguments(use_cpu="
    "True)); accelerate on CPU: ACCELERATE_USE_CPU=true; your own loop: wrap the model in torch.nn.parallel."
    "DistributedDataParallel (or FSDP2's fully_shard); ranks that train independent models on purpose: "
    "distributed='none' (--optim_args distributed=none). This check runs once; replica_check=False skips it."
)


def check_replicas(jobs, group) -> bool:
    """The divergent-gradient check over ``group``. Returns True when conclusive (passed), False when every
    matrix is zero on every rank (e.g. DCP's zero-gradient initialisation step: try again next step); raises
    :class:`DisagreementError` when the ranks' matrices differ."""
    local = torch.stack(
        [
            torch.stack(
                [j.tensor.sum(dtype=torch.float64), torch.linalg.vector_norm(j.tensor, dtype=torch.float64).square()]
            )
            for j in jobs
        ]
    )
    both = torch.cat([local, -local]).reshape(-1)
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    hi, lo = both.reshape(2, len(jobs), 2)
    hi, lo = hi.cpu(), -lo.cpu()
    scale = (hi[:, 1].clamp_min(0) * max(j.tensor.numel() for j in jobs)).sqrt()  # bounds |sum| and ||·||²
    diff = (hi - lo).abs()
    bad = (diff[:, 0] > REPLICA_TOL * scale) | (diff[:, 1] > REPLICA_TOL * hi[:, 1].abs())
    if bool(bad.any()):
        k = int(bad.nonzero()[0])
        raise DisagreementError(
            f"hf_muon: the Muon gradients differ across the {dist.get_world_size(group)} ranks that share them "
            f"(first step; {int(bad.sum())} of {len(jobs)} matrices differ; the first, shape "
            f"{tuple(jobs[k].tensor.shape)}, has squared norm between {float(lo[k, 1]):.6g} and "
            f"{float(hi[k, 1]):.6g} across ranks). {REPLICA_HINT}"
        )
    return bool(hi[:, 1].max() > 0)


def check_launch(trainer_world_size: int, distributed: str = "auto") -> None:
    """Raise when a process group of more ranks exists than the trainer uses (transformers'
    ``TrainingArguments.world_size``): torchrun started several processes, but each one trains alone, on the same
    batches (on CPU, ``TrainingArguments`` without ``use_cpu=True`` never enters DDP). Their gradients agree, so
    :func:`check_replicas` cannot see it; the launcher can. ``distributed="none"`` (independent ranks) passes."""
    if distributed == "none" or not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    if world > 1 and trainer_world_size == 1:
        raise DisagreementError(
            f"hf_muon: {world} processes share a torch.distributed process group, but the trainer runs each one as "
            "a single process (TrainingArguments.parallel_mode is not DISTRIBUTED): every rank would train its own "
            "copy of the model on the same batches. On CPU pass --use_cpu true (TrainingArguments(use_cpu=True); "
            "accelerate: ACCELERATE_USE_CPU=true), or launch one process. Ranks that train independent models on "
            "purpose: distributed='none' (--optim_args distributed=none)."
        )


__all__ = ["REPLICA_HINT", "DisagreementError", "agree", "check_launch", "check_replicas", "job_text", "signature"]
