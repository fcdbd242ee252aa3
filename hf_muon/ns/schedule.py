"""Layer-aware Newton-Schulz step counts.

*Spectral Scaling Laws of Muon* (arXiv 2606.04058): after burn-in, the σ-quantiles of each layer's
Frobenius-normalised momentum settle at values that shrink with model size as ``M^-α``, with α ≈ 0.25
for most layers but up to ≈ 0.96 for some late layers, which then fall below what 5 quintic steps lift.
Newton-Schulz maps each normalised singular value through the composed scalar polynomial
(:func:`hf_muon.ns.coefficients.scalar_map`), so the steps a matrix needs follow from where its spectrum
sits: each extra Keller step lowers the smallest lifted σ by ≈ 3.44× (its slope at 0); Polar Express
has its own per-step slopes.

``ns_steps`` may be:

* an ``int`` — every matrix;
* ``"auto"`` — per matrix, the fewest steps in ``[auto_min, auto_max]`` whose scalar map lifts the
  ``auto_quantile`` σ-quantile of the normalised momentum to ≥ ``auto_target``; re-estimated every
  ``auto_every`` optimizer steps from the eigenvalues of the small-side Gram matrix ``MMᵀ``
  (σ² = eig(MMᵀ): one Gram product plus a symmetric eigensolve, about one NS iteration's cost,
  amortised over ``auto_every`` steps; no SVD per step);
* a depth schedule ``DepthSchedule(last=k, steps=s, default=d)`` or the string ``"last{k}:{s}"`` —
  ``s`` steps for matrices in the last ``k`` transformer layers, ``d`` elsewhere;
* a map ``{regex: steps, ..., "default": d}`` on parameter names (first match wins; steps may be
  ``"auto"``).

Schedules are resolved per parameter by :func:`hf_muon.param_groups`, which splits Muon groups by
step count; ``"auto"`` lives in the optimizer (per-parameter state ``ns_steps``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .coefficients import scalar_map


@dataclass(frozen=True)
class DepthSchedule:
    """``steps`` NS iterations for the last ``last`` layers, ``default`` elsewhere."""

    last: int
    steps: int
    default: int = 5


def parse_schedule(spec):
    """Normalise user input (int, "auto", "last2:10", DepthSchedule, dict) into one of those types."""
    if isinstance(spec, bool):
        raise ValueError(f"invalid ns_steps {spec!r}")
    if isinstance(spec, (int, DepthSchedule)) or spec == "auto":
        return spec
    if isinstance(spec, str):
        m = re.fullmatch(r"last(\d+):(\d+)(?::(\d+))?", spec)
        if m:
            return DepthSchedule(int(m.group(1)), int(m.group(2)), int(m.group(3) or 5))
        if spec.isdigit():
            return int(spec)
        raise ValueError(
            f"invalid ns_steps {spec!r}; valid: an int, 'auto', 'last<k>:<steps>[:<default>]', "
            "a DepthSchedule or a {regex: steps} dict"
        )
    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            if k != "default":
                try:
                    re.compile(k)
                except re.error as e:
                    raise ValueError(f"invalid ns_steps regex {k!r}: {e}") from None
            out[k] = parse_schedule(v)
            if isinstance(out[k], (dict, DepthSchedule)):
                raise ValueError(f"ns_steps map values must be ints or 'auto', got {v!r} for {k!r}")
        return out
    raise ValueError(f"invalid ns_steps {spec!r}")


def resolve_steps(spec, name: str, depth: int | None, n_layers: int | None, default: int = 5):
    """Steps (int or "auto") for one parameter under a parsed schedule."""
    spec = parse_schedule(spec)
    if isinstance(spec, int) or spec == "auto":
        return spec
    if isinstance(spec, DepthSchedule):
        if depth is not None and n_layers is not None and depth >= n_layers - spec.last:
            return spec.steps
        return spec.default
    for pattern, steps in spec.items():
        if pattern != "default" and re.search(pattern, name):
            return steps
    return spec.get("default", default)


# ------------------------------------------------------------------------------------------- auto
@lru_cache(maxsize=256)
def _lift_table(coefficients_key, target: float, max_steps: int) -> tuple[float, ...]:
    """Smallest normalised σ that T steps lift to ≥ target (for T = 0..max_steps), on a log grid."""
    coefficients = coefficients_key if isinstance(coefficients_key, str) else [list(t) for t in coefficients_key]
    x = np.logspace(-12, 0, 6001)
    out = []
    for t in range(max_steps + 1):
        bad = np.nonzero(scalar_map(x, coefficients, t) < target)[0]
        if len(bad) == 0:
            out.append(float(x[0]))
        elif bad[-1] == len(x) - 1:
            out.append(float("inf"))  # not even σ = 1 reaches the target (e.g. 0 steps)
        else:
            out.append(float(x[bad[-1] + 1]))  # every σ from here up is lifted
    return tuple(out)


def _coef_key(coefficients):
    if isinstance(coefficients, str):
        return coefficients
    return tuple(tuple(float(v) for v in t) for t in coefficients)


def lift_threshold(coefficients, steps: int, target: float = 0.5) -> float:
    """Smallest normalised singular value that ``steps`` iterations lift to at least ``target``."""
    return _lift_table(_coef_key(coefficients), float(target), int(steps))[steps]


def steps_for(sigma: float, coefficients, target: float = 0.5, min_steps: int = 1, max_steps: int = 15) -> int:
    """Fewest steps in [min_steps, max_steps] that lift ``sigma`` to ≥ ``target`` (max_steps if none)."""
    table = _lift_table(_coef_key(coefficients), float(target), int(max_steps))
    for t in range(min_steps, max_steps + 1):
        if sigma >= table[t]:
            return t
    return max_steps


@torch.no_grad()
def normalized_sigma_quantile(M: torch.Tensor, q: float) -> float:
    """The q-quantile of σ(M)/‖M‖_F via eigenvalues of the small-side Gram matrix (pooled over a batch)."""
    X = M.reshape(-1, M.shape[-2], M.shape[-1]) if M.ndim >= 2 else M.reshape(1, 1, -1)
    if X.shape[-2] > X.shape[-1]:
        X = X.mT
    X = X.to(torch.float64)
    fro2 = X.pow(2).sum(dim=(-2, -1), keepdim=True).clamp_min(1e-300)
    ev = torch.linalg.eigvalsh(X @ X.mT / fro2).clamp_min(0.0)
    return float(torch.quantile(ev.sqrt().flatten(), q))
