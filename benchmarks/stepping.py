"""``optimizer.step()`` timing on one model with fixed gradients (bench_step.py, bench_scaling.py).

No forward or backward: gradients are fixed seeded Gaussian tensors (std ``GRAD_STD``), the same for every
optimizer, copied back into ``p.grad`` (untimed) before every step, because some implementations change or
drop them (Keller's ``muon`` and ``pytorch_optimizer`` mix the Nesterov term into ``p.grad`` in place;
``heavyball`` sets ``p.grad = None``). Every optimizer of the line-up is built on the same parameters and
timed by the interleaved protocol of :mod:`benchmarks.timing` (step time does not depend on the weights'
values); the weights are reset to their initial values before and after. State bytes: the sum of
``nbytes`` over the tensors in ``optimizer.state`` after timing (nested containers walked, each tensor once).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .machine import contended
from .peers import ADAMW_LR, Peer, Routed, Stepper
from .timing import Contender, Timing, device_sync, interleave

GRAD_SEED = 1
GRAD_STD = 0.01


@dataclass
class Case:
    """One model on the device with its routing, initial weights and fixed gradients."""

    name: str
    routed: Routed
    initial: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor] = field(default_factory=list)

    @property
    def params(self) -> list[nn.Parameter]:
        return self.routed.params

    @property
    def muon(self) -> list[nn.Parameter]:
        return self.routed.muon

    def reset(self) -> None:
        """Initial weights back, gradients dropped."""
        with torch.no_grad():
            for p, w in zip(self.params, self.initial, strict=True):
                p.copy_(w)
                p.grad = None

    def load_grads(self) -> None:
        """The fixed gradients into ``p.grad`` (a fresh tensor where an optimizer dropped it)."""
        with torch.no_grad():
            for p, g in zip(self.params, self.grads, strict=True):
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)

    def summary(self) -> dict:
        return {
            "params": sum(p.numel() for p in self.params),
            "muon_params": sum(p.numel() for p in self.muon),
            "muon_tensors": len(self.muon),
            "moe_experts": self.routed.moe_experts,
        }


def make_case(name: str, model: nn.Module, device: torch.device, moe_experts: str = "adamw") -> Case:
    case = Case(name, Routed(model.to(device), moe_experts))
    case.initial = [p.detach().clone() for p in case.params]
    gen = torch.Generator().manual_seed(GRAD_SEED)
    case.grads = [
        (torch.randn(p.shape, generator=gen) * GRAD_STD).to(device=device, dtype=p.dtype) for p in case.params
    ]
    return case


def _time_ns(stepper: Stepper, sync) -> list[float]:
    """Wrap the hf_muon optimizer's ``orthogonalize`` (an instance attribute: ``step()`` calls
    ``self.orthogonalize``) so each call's wall time is appended to the returned list."""
    opt = stepper.optimizers[0]
    inner, times = opt.orthogonalize, []

    def timed(jobs):
        t0 = time.perf_counter()
        out = inner(jobs)
        if sync is not None:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
        return out

    opt.orthogonalize = timed
    return times


def _record(peer: Peer, case: Case, stepper: Stepper, t: Timing, slow_s: float) -> dict:
    record = {
        "name": peer.name,
        "family": peer.family,
        "note": peer.note,
        "status": "ok",
        "step_ms": t.median_ms,
        "timing": t.to_dict(),
        "state_bytes": stepper.state_bytes(),
        "other_cores": t.other_cores,
        "faults_per_step": t.median_faults,
    }
    if peer.flattens_3d and any(p.ndim == 3 for p in case.muon):
        record["note"] += "; 3-D expert stacks flattened to (E, out·in), not per expert"
    if stepper.note:
        record["note"] += f"; {stepper.note}"
    if contended(t.other_cores):
        record["note"] += f"; CONTENDED: other processes used {t.other_cores:.1f} cores while timing"
    first = t.warmup_ms[0] if t.warmup_ms else None
    if first is not None and first > 1000 and first > 10 * t.median_ms:
        record["note"] += f"; first step {first / 1e3:.1f} s (one-off setup)"
    if t.reduced:
        record["note"] += f"; slow (>{slow_s:g} s/step): {len(t.warmup_ms)} warmup + 1 timed step"
    return record


def _failed(peer: Peer, e: Exception) -> dict:
    return {
        "name": peer.name,
        "family": peer.family,
        "note": peer.note,
        "status": "failed",
        "reason": f"{type(e).__name__}: {e}".strip(),
        "step_ms": None,
        "state_bytes": None,
    }


def time_peers(
    case: Case,
    peers: Sequence[Peer],
    *,
    tiny: bool,
    device: torch.device,
    warmup: int,
    repeats: int,
    slow_s: float,
    ns_time: bool = False,
    lr: float = ADAMW_LR,
) -> list[dict]:
    """Build every peer on ``case`` and time their ``step()`` interleaved; one record per peer, in order.

    A peer that fails to build or to step is a record with the exception text as its reason. A peer that
    changes torch's global float32 matmul precision gets it restored after each of its steps (noted), so it
    cannot change the others' numbers. ``ns_time``: hf_muon records also get the time inside ``orthogonalize``
    (``ns_ms``, ``ns_times_ms``, ``ns_share`` of the step).
    """
    sync = device_sync(device)
    precision = torch.get_float32_matmul_precision()
    case.reset()
    steppers: dict[str, Stepper | Exception] = {}
    ns_ms: dict[str, list[float]] = {}
    changed: dict[str, str] = {}

    def restore(name: str) -> None:
        if torch.get_float32_matmul_precision() != precision:
            changed[name] = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision(precision)

    def before() -> None:
        case.load_grads()
        if sync is not None:
            sync()

    for peer in peers:
        try:
            steppers[peer.name] = peer.build(case.routed, lr, tiny)
            if ns_time and peer.family == "hf_muon":
                ns_ms[peer.name] = _time_ns(steppers[peer.name], sync)
        except Exception as e:  # a peer that cannot run is reported with its reason, never dropped
            steppers[peer.name] = e
        restore(peer.name)
    contenders = [
        Contender(n, s.step, before, lambda n=n: restore(n)) for n, s in steppers.items() if isinstance(s, Stepper)
    ]
    timings = interleave(contenders, warmup=warmup, repeats=repeats, sync=sync, slow_s=slow_s)

    def record(peer: Peer) -> dict:
        result = timings.get(peer.name, steppers[peer.name])
        if isinstance(result, Exception):
            return _failed(peer, result)
        r = _record(peer, case, steppers[peer.name], result, slow_s)
        if peer.name in ns_ms:
            timed = ns_ms[peer.name][-len(result.times_ms) :]
            r.update(
                ns_ms=statistics.median(timed), ns_times_ms=timed, ns_share=statistics.median(timed) / r["step_ms"]
            )
        if peer.name in changed:
            r["note"] += f"; changed float32 matmul precision to {changed[peer.name]!r} (restored)"
        return r

    records = [record(peer) for peer in peers]
    steppers.clear()  # the optimizers and their state go before the next case is built
    del contenders
    case.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return records


def add_ratios(records: list[dict], base: str = "AdamW (torch)", muon: str = "torch.optim.Muon + AdamW") -> None:
    """``ratio_adamw`` (step ms over ``base``'s) on every record, ``ratio_torch_muon`` on hf_muon ones."""
    by_name = {r["name"]: r for r in records}
    adamw = by_name.get(base, {}).get("step_ms")
    torch_muon = by_name.get(muon, {}).get("step_ms")
    for r in records:
        ms = r.get("step_ms")
        r["ratio_adamw"] = ms / adamw if ms and adamw else None
        r["ratio_torch_muon"] = ms / torch_muon if ms and torch_muon and r["family"] == "hf_muon" else None


def any_contended(records: Sequence[dict]) -> bool:
    return any(contended(r.get("other_cores")) for r in records)
