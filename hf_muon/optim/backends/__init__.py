"""Orthogonalize backends (the one override point) and the choice among them.

* :class:`LocalBackend`: one process, batched by shape.
* :class:`ReplicatedBackend`: DDP; FLOP-balanced owners, one all-gather of the results; the first-step check that
  the ranks' gradients really are replicas.
* :class:`ShardedBackend`: DTensor parameters of any supported layout (FSDP2, HSDP, tensor parallel, FSDP2 + TP,
  experts; :mod:`.layout`): pieces gathered to owners by all-to-all and scattered back; plain parameters of the
  same optimizer go to the replicated (or local) backend.

Every built-in backend decides the Newton-Schulz dtype once per optimizer and, when it communicates, agrees on it
and on the job list with the other ranks before its first collective (:mod:`.agree`).
"""

from __future__ import annotations

from .agree import DisagreementError, check_launch
from .assign import assign_owners, imbalance, ns_cost, round_robin
from .base import STATE_KEY, Backend, BackendBase, CommStats
from .layout import LayoutError
from .local import LocalBackend
from .replicated import ReplicatedBackend
from .sharded import ShardedBackend


def select_backend(
    distributed: str = "auto", process_group=None, batched: bool = True, *, replica_check: bool = True
) -> Backend:
    """The backend for an optimizer, chosen once at construction.

    ``distributed="auto"``: DTensor (sharded) parameters take the sharded exchange, plain ones are shared by
    owner ranks when a process group of more than one rank exists (DDP), else run locally. ``"none"``: every
    rank orthogonalizes its own plain parameters (ranks training independent models); DTensor parameters
    still need the sharded exchange (a shard alone is not a matrix). ``replica_check``: at the first step, check
    that ranks sharing plain matrices hold the same gradients (:func:`.agree.check_replicas`).
    """
    import torch.distributed as dist

    multi = dist.is_available() and dist.is_initialized() and dist.get_world_size(process_group) > 1
    plain = (
        ReplicatedBackend(process_group, batched, replica_check)
        if distributed == "auto" and multi
        else LocalBackend(batched)
    )
    if dist.is_available():
        return ShardedBackend(plain, batched, replica_check)
    return plain


__all__ = [
    "STATE_KEY",
    "Backend",
    "BackendBase",
    "CommStats",
    "DisagreementError",
    "LayoutError",
    "LocalBackend",
    "ReplicatedBackend",
    "ShardedBackend",
    "assign_owners",
    "check_launch",
    "imbalance",
    "ns_cost",
    "round_robin",
    "select_backend",
]
