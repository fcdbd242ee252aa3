"""Orthogonalize backends (the one override point) and the choice among them.

* :class:`LocalBackend`: one process, batched by shape.
* :class:`ReplicatedBackend`: DDP; FLOP-balanced owners, one all-gather of the results.
* :class:`ShardedBackend`: FSDP2 / DTensor; rows gathered to owners by all-to-all and scattered back;
  plain parameters of the same optimizer go to the replicated (or local) backend.
"""

from __future__ import annotations

from .assign import assign_owners, imbalance, ns_cost, round_robin
from .base import Backend, CommStats
from .local import LocalBackend
from .replicated import ReplicatedBackend
from .sharded import ShardedBackend


def select_backend(distributed: str = "auto", process_group=None, batched: bool = True) -> Backend:
    """The backend for an optimizer, chosen once at construction.

    ``distributed="auto"``: DTensor (sharded) parameters take the sharded exchange, plain ones are shared by
    owner ranks when a process group of more than one rank exists (DDP), else run locally. ``"none"``: every
    rank orthogonalizes its own plain parameters (ranks training independent models); DTensor parameters
    still need the sharded exchange (a shard alone is not a matrix).
    """
    import torch.distributed as dist

    multi = dist.is_available() and dist.is_initialized() and dist.get_world_size(process_group) > 1
    plain = ReplicatedBackend(process_group, batched) if distributed == "auto" and multi else LocalBackend(batched)
    if dist.is_available():
        return ShardedBackend(plain, batched)
    return plain


__all__ = ["Backend", "CommStats", "LocalBackend", "ReplicatedBackend", "ShardedBackend", "assign_owners",
           "imbalance", "ns_cost", "round_robin", "select_backend"]
