"""Distributed Muon: FLOP-balanced owners (assign), replicated/sharded result exchange (exchange)."""

from .assign import assign_owners, imbalance, ns_cost, round_robin
from .exchange import CommStats, orthogonalize_distributed

__all__ = ["CommStats", "assign_owners", "imbalance", "ns_cost", "orthogonalize_distributed", "round_robin"]
