"""Per-step numbers for diagnostics (built only when ``Muon.track_stats`` is on).

Update RMS excludes weight decay: Muon ``lr·α·O``, AdamW ``lr·m̂/(√v̂ + ε)`` (the latter costs a pass over
every AdamW parameter, so only with ``track_stats="full"``).
"""

from __future__ import annotations

import time

import torch


class StepStats:
    def __init__(self):
        self.t0 = time.perf_counter()
        self.ns_seconds = 0.0
        self.sq = {"muon": 0.0, "adamw": 0.0}
        self.numel = {"muon": 0, "adamw": 0}
        self.lr = {"muon": [], "adamw": []}

    @staticmethod
    def _sync(device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def start_ns(self, device):
        self._sync(device)
        self._ns0 = time.perf_counter()

    def stop_ns(self, device):
        self._sync(device)
        self.ns_seconds += time.perf_counter() - self._ns0

    def add_muon(self, group, ortho, scales):
        norms = torch.stack(torch._foreach_norm([o.float() for o in ortho])).double()
        coef = torch.tensor(scales, dtype=torch.float64, device=norms.device) * group["lr"]
        self.sq["muon"] += float(((norms * coef) ** 2).sum())
        self.numel["muon"] += sum(o.numel() for o in ortho)
        self.lr["muon"] += [group["lr"] * min(scales), group["lr"] * max(scales)]

    def add_adamw(self, group, params, states):
        beta1, beta2 = group["betas"]
        for p, st in zip(params, states):
            step = float(st["step"])
            m = st["exp_avg"].float() / (1 - beta1**step)
            v = st["exp_avg_sq"].float() / (1 - beta2**step)
            self.sq["adamw"] += float((group["lr"] * m / (v.sqrt() + group["eps"])).pow(2).sum())
            self.numel["adamw"] += p.numel()
        self.lr["adamw"].append(group["lr"])

    def finish(self) -> dict:
        out = {"optimizer_seconds": time.perf_counter() - self.t0, "ns_seconds": self.ns_seconds}
        for kind in ("muon", "adamw"):
            if self.numel[kind]:
                out[f"update_rms_{kind}"] = (self.sq[kind] / self.numel[kind]) ** 0.5
                out[f"lr_{kind}_min"], out[f"lr_{kind}_max"] = min(self.lr[kind]), max(self.lr[kind])
        return out


__all__ = ["StepStats"]
