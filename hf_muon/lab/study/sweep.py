"""Learning-rate sweeps whose optimum lies inside the grid.

A sweep trains one run per lr and keeps the lr with the lowest validation loss. When that lr is the smallest
or the largest of the grid, the optimum may lie beyond it, so the grid is extended by one geometric step
past that edge (``lr / r`` or ``lr · r``, with ``r`` the grid's ratio, :func:`grid_ratio`), the new point is
run, and the choice is made again: at most ``max_extensions`` times. Every extension is recorded, and a
choice still at an edge after the last one is flagged (``at_edge``) so the report can say so.

Non-finite losses (a diverged run) never win; when every run diverged the grid is extended downwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable

DEFAULT_RATIO = 2.0


def grid_ratio(grid: list[float]) -> float:
    """The geometric step of a sorted grid: ``(max/min)^(1/(n−1))``; 2 for a one-point grid."""
    g = sorted(grid)
    if len(g) < 2 or g[0] <= 0 or g[-1] == g[0]:
        return DEFAULT_RATIO
    return (g[-1] / g[0]) ** (1.0 / (len(g) - 1))


def best_lr(losses: dict[float, float]) -> float:
    """The lr of the lowest finite loss (ties: the smaller lr); the smallest lr when none is finite."""
    finite = {lr: v for lr, v in losses.items() if v is not None and math.isfinite(v)}
    if not finite:
        return min(losses)
    return min(finite, key=lambda lr: (finite[lr], lr))


def edge_extension(losses: dict[float, float], ratio: float) -> float | None:
    """The next lr to try when the best sits at an edge of the grid, else ``None`` (an interior optimum).

    A one-point grid counts as both edges: it is extended downwards when the run diverged, upwards otherwise.
    """
    grid = sorted(losses)
    lr = best_lr(losses)
    if not any(v is not None and math.isfinite(v) for v in losses.values()):
        return grid[0] / ratio
    if lr == grid[0] and len(grid) > 1:
        return grid[0] / ratio
    if lr == grid[-1]:
        return grid[-1] * ratio
    return None


def run_sweep(
    grid: list[float], run: Callable[[float], float], max_extensions: int, log: Callable[[str], None] = lambda s: None
) -> dict:
    """Run ``run(lr) -> validation loss`` over ``grid``, extending it past an edge optimum (module docstring).

    Returns ``{"chosen_lr", "losses": {lr: loss}, "grid": declared, "extended": [added lrs], "at_edge": bool}``.
    """
    grid = sorted(grid)
    ratio = grid_ratio(grid)
    losses = {lr: run(lr) for lr in grid}
    extended: list[float] = []
    while len(extended) < max_extensions:
        nxt = edge_extension(losses, ratio)
        if nxt is None:
            break
        nxt = float(f"{nxt:.4g}")  # a readable lr (and a stable directory name)
        if nxt in losses:
            break
        log(f"best lr {best_lr(losses):g} is at the edge of {sorted(losses)}: extending to {nxt:g}")
        losses[nxt] = run(nxt)
        extended.append(nxt)
    at_edge = len(losses) > 1 and edge_extension(losses, ratio) is not None
    return {
        "chosen_lr": best_lr(losses),
        "losses": dict(sorted(losses.items())),
        "grid": grid,
        "extended": extended,
        "at_edge": at_edge,
    }


__all__ = ["DEFAULT_RATIO", "best_lr", "edge_extension", "grid_ratio", "run_sweep"]
