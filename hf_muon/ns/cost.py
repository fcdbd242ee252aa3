"""The Newton-Schulz FLOP formulas — the one place they are written.

Standard iteration on a wide ``m × n`` matrix (``m ≤ n``; a tall one is transposed first): one quintic step
computes ``A = XXᵀ`` (2m²n FLOPs), ``B = bA + cA²`` (2m³) and ``aX + BX`` (2m²n), so ``T`` steps cost
``T·(4m²n + 2m³)``.

Gram-space iteration (:mod:`hf_muon.ns.gram`) with ``r`` restarts, i.e. ``s = r + 1`` segments: ``R = X₀X₀ᵀ``
(2m²n), per step ``A²`` (2m³), a Q-update (2m³) on every step but a segment's first, an A-update ``PAP``
(4m³) on every step but a segment's last, each restart ``X ← QX; R ← XXᵀ`` (4m²n) and the final ``QX₀``
(2m²n): ``4(1 + r)m²n + (8T − 6s)m³``.

Leading dims are a batch (expert stacks). Distributed owners balance on this cost, ``ns_method="auto"``
compares the two, benchmarks turn it into GFLOP/s, recipes into time estimates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def ns_flops(shape: Sequence[int], steps: int = 5, method: str = "newton_schulz", restarts: int = 0) -> int:
    """FLOPs of ``steps`` iterations (``method`` "newton_schulz" or "gram" with ``restarts``) on a tensor whose
    last two dims are the matrix."""
    *lead, a, b = (int(s) for s in shape)
    m, n = min(a, b), max(a, b)
    steps = int(steps)
    if method == "gram":
        if steps == 0:
            return 0
        segments = min(restarts, steps - 1) + 1
        per = 4 * segments * m * m * n + (8 * steps - 6 * segments) * m**3
    else:
        per = steps * (4 * m * m * n + 2 * m**3)
    return per * math.prod(lead)


__all__ = ["ns_flops"]
