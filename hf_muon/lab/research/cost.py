"""FLOP counts and time estimates of the recipes.

* :func:`ns_flops` is :func:`hf_muon.ns.cost.ns_flops` (the one Newton-Schulz FLOP formula,
  ``steps·(4m²n + 2m³)``); :func:`optimizer_ns_flops` sums it over an optimizer's Muon matrices.
* :func:`train_flops`: ≈ model FLOPs of training; :func:`time_estimate` turns both into minutes.
"""

from __future__ import annotations

import torch

from hf_muon.ns.cost import ns_flops

from ..models import param_counts
from .optim import muon_params

# Rates behind the recipes' time estimates, measured with one torch thread on this project's AVX-512 CPU
# (shared, under load): fp32 forward+backward of these models 80-97 GFLOP/s (also used for the fp32
# Gram work of p = 1/2, 1/4), bf16 Newton-Schulz 300-335 GFLOP/s. Two threads on *shared* cores were
# pathological (OpenMP waits on a descheduled thread: ~30x slower steps), so the recipes use one thread.
DEFAULT_THROUGHPUT_GFLOPS = 80.0
DEFAULT_NS_THROUGHPUT_GFLOPS = 300.0


def current_ns_steps(opt, p: torch.Tensor, group: dict) -> int:
    """Steps used for ``p`` at the last optimizer step (``"auto"``: the per-parameter state)."""
    if group["ns_steps"] == "auto":
        st = opt.state.get(p, {})
        return int(st["ns_steps"]) if "ns_steps" in st else int(group["auto_max"])
    return int(group["ns_steps"])


def optimizer_ns_flops(opt) -> int:
    """NS FLOPs of one optimizer step with the step counts currently in use."""
    return sum(ns_flops(p.shape, current_ns_steps(opt, p, g)) for _, p, g in muon_params(opt))


def train_flops(model, tokens: int, block_size: int) -> float:
    """≈ training FLOPs: ``6·(non-embedding + output-head matmul params)·tokens`` plus attention scores
    ``12·layers·T·width`` per token (forward + backward)."""
    counts = param_counts(model)
    cfg = model.config
    vocab = cfg.vocab_size
    width = getattr(cfg, "hidden_size", None) or cfg.n_embd
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    active = counts["non_embedding"] + vocab * width
    return 6.0 * active * tokens + 12.0 * layers * block_size * width * tokens


def estimate_minutes(flops: float, gflops: float = DEFAULT_THROUGHPUT_GFLOPS) -> float:
    return flops / (gflops * 1e9) / 60.0


def time_estimate(train: float, ns: float, cfg: dict, **extra) -> dict:
    """Minutes for ``train`` FLOPs at ``cfg["throughput_gflops"]`` plus ``ns`` FLOPs (Newton-Schulz) at
    ``cfg["ns_throughput_gflops"]``."""
    thr, nthr = float(cfg["throughput_gflops"]), float(cfg["ns_throughput_gflops"])
    minutes = estimate_minutes(train, thr) + estimate_minutes(ns, nthr)
    return {
        "flops": train + ns,
        "train_flops": train,
        "ns_flops": ns,
        "throughput_gflops": thr,
        "ns_throughput_gflops": nthr,
        "minutes": minutes,
        **extra,
    }


def describe_estimate(est: dict) -> str:
    """One sentence for a report: FLOPs, rates and minutes."""
    return (
        f"{est['flops'] / 1e9:,.0f} GFLOP ({est['train_flops'] / 1e9:,.0f} model/fp32 at {est['throughput_gflops']:g} "
        f"GFLOP/s + {est['ns_flops'] / 1e9:,.0f} Newton-Schulz at {est['ns_throughput_gflops']:g} GFLOP/s, the rates "
        f"measured here with one thread) ≈ **{est['minutes']:.0f} min**"
    )


__all__ = [
    "DEFAULT_NS_THROUGHPUT_GFLOPS",
    "DEFAULT_THROUGHPUT_GFLOPS",
    "current_ns_steps",
    "describe_estimate",
    "estimate_minutes",
    "ns_flops",
    "optimizer_ns_flops",
    "time_estimate",
    "train_flops",
]
