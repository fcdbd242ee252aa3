"""Which rank orthogonalizes which matrix: FLOP-balanced, deterministic.

Costs come from the one FLOP formula (:func:`hf_muon.ns.cost.ns_flops`). Owners are chosen by LPT (longest
processing time first): jobs sorted by cost, each given to the currently least-loaded rank (ties: lowest
rank). LPT is within 4/3 of the optimal makespan (Graham 1969), and every rank computes the same assignment
from the same job list, so no communication is needed to agree on it. Why not round-robin: matrices of one
model differ in cost (MLP vs attention), so counting matrices loads ranks unevenly.
"""

from __future__ import annotations

from ...ns.cost import ns_flops


def ns_cost(shape, steps: int = 5) -> float:
    """Cost of one job for owner balancing: its NS FLOPs (at least one step, so 0-step jobs still spread)."""
    return float(ns_flops(shape, max(int(steps), 1)))


def assign_owners(costs: list[float], world_size: int, loads: list[float] | None = None) -> list[int]:
    """Owner rank of each job (LPT greedy). ``loads``: the ranks' loads so far (from other exchange groups of the
    same step), updated in place."""
    loads = [0.0] * world_size if loads is None else loads
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(world_size), key=lambda k: (loads[k], k))
        owners[i] = r
        loads[r] += costs[i]
    return owners


def round_robin(costs: list[float], world_size: int) -> list[int]:
    """The naive assignment (for comparison in benchmarks): job i goes to rank i mod world."""
    return [i % world_size for i in range(len(costs))]


def imbalance(costs: list[float], owners: list[int], world_size: int) -> float:
    """max/mean per-rank load (1.0 is perfect balance)."""
    loads = [0.0] * world_size
    for c, o in zip(costs, owners):
        loads[o] += c
    mean = sum(loads) / world_size
    return max(loads) / mean if mean > 0 else 1.0
