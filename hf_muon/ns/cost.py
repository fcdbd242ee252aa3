"""The Newton-Schulz FLOP formula — the one place it is written.

One quintic iteration on a wide ``m × n`` matrix (``m ≤ n``; a tall one is transposed first) computes
``A = XXᵀ`` (2m²n FLOPs), ``B = bA + cA²`` (2m³) and ``aX + BX`` (2m²n), so ``T`` steps cost
``T·(4m²n + 2m³)``. Leading dims are a batch (expert stacks). Distributed owners balance on this cost,
benchmarks turn it into GFLOP/s, recipes into time estimates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def ns_flops(shape: Sequence[int], steps: int = 5) -> int:
    """FLOPs of ``steps`` Newton-Schulz iterations on a tensor whose last two dims are the matrix."""
    *lead, a, b = (int(s) for s in shape)
    m, n = min(a, b), max(a, b)
    return int(steps) * (4 * m * m * n + 2 * m**3) * math.prod(lead)


__all__ = ["ns_flops"]
