"""The one timing protocol of the benchmarks: warmup, then interleaved rounds, medians.

Every contender (a callable with untimed ``before`` / ``after`` hooks) is called in rounds: A, B, C, B, C,
A, C, A, B ... First ``warmup`` untimed rounds (state allocation, torch.compile, caches), then ``repeats`` timed
rounds, each calling every contender once, each starting one contender later than the one before, so that no
contender always runs right after the same neighbour (in bench_step the first hf_muon row after the peers took
~1,000 page faults per step its identical twin further on did not pay). A slow spell of the machine (another
process, frequency or thermal throttling) therefore hits every contender of that round alike and cancels in
their ratios; each contender's time is the median over its rounds. A device sync runs inside the timed region.

* A contender whose warmup call (the second one when there are several: the first carries one-off costs)
  exceeds ``slow_s`` stops warming up and is timed in the first round only (``reduced``).
* A contender that raises (while warming up or timed) drops out; its exception is its result.
* Other processes' CPU use is measured over the timed rounds (:class:`~benchmarks.machine.OtherProcesses`)
  and recorded with every timing (``other_cores``).
* Minor page faults of each timed call (``getrusage``, outside the timed region) are recorded too
  (``faults``, median ``median_faults``): fresh memory the kernel had to map and zero, a cost that hides in
  step times on CPU.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from .machine import OtherProcesses


@dataclass
class Timing:
    """Wall times of one contender, in milliseconds."""

    median_ms: float
    times_ms: list[float]
    warmup_ms: list[float] = field(default_factory=list)
    reduced: bool = False  # a warmup call exceeded ``slow_s``: one call was timed
    other_cores: float | None = None  # cores other processes kept busy during the timed rounds
    interleaved_with: int = 1  # contenders in the same rounds (this one included)
    faults: list[int] = field(default_factory=list)  # minor page faults of each timed call

    @property
    def median_faults(self) -> float | None:
        return statistics.median(self.faults) if self.faults else None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Contender:
    name: str
    call: Callable[[], object]
    before: Callable[[], object] | None = None  # untimed, before every call
    after: Callable[[], object] | None = None  # untimed, after every call


@dataclass
class _Track:
    warmup_ms: list[float] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    reduced: bool = False
    error: Exception | None = None


def _call(c: Contender, sync: Callable[[], object] | None, track: _Track) -> tuple[float, int] | None:
    """One untimed ``before``, one timed call (+ sync), one untimed ``after``: (ms, minor page faults); None (and
    the error kept) on failure."""
    try:
        if c.before is not None:
            c.before()
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        c.call()
        if sync is not None:
            sync()
        ms = (time.perf_counter() - start) * 1e3
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
        if c.after is not None:
            c.after()
        return ms, faults
    except Exception as e:  # reported as the contender's result, never dropped
        track.error = e
        return None


def interleave(
    contenders: Sequence[Contender],
    *,
    warmup: int,
    repeats: int,
    sync: Callable[[], object] | None = None,
    slow_s: float | None = None,
) -> dict[str, Timing | Exception]:
    """Time ``contenders`` in interleaved rounds (module docstring); returns name → Timing, or the exception."""
    tracks = {c.name: _Track() for c in contenders}
    for i in range(warmup):
        for c in contenders:
            t = tracks[c.name]
            if t.error is not None or t.reduced:
                continue
            done = _call(c, sync, t)
            if done is None:
                continue
            ms = done[0]
            t.warmup_ms.append(ms)
            if slow_s is not None and (i > 0 or warmup == 1) and ms > slow_s * 1e3:
                t.reduced = True
    live = sum(t.error is None for t in tracks.values())
    with OtherProcesses() as others:
        for i in range(repeats):
            k = i % len(contenders)
            for c in list(contenders[k:]) + list(contenders[:k]):  # each round starts one contender later
                t = tracks[c.name]
                if t.error is None and not (t.reduced and i > 0):
                    done = _call(c, sync, t)
                    if done is not None:
                        t.times_ms.append(done[0])
                        t.faults.append(done[1])
    out: dict[str, Timing | Exception] = {}
    for c in contenders:
        t = tracks[c.name]
        out[c.name] = (
            t.error
            if t.error is not None
            else Timing(statistics.median(t.times_ms), t.times_ms, t.warmup_ms, t.reduced, others.cores, live, t.faults)
        )
    return out


def device_sync(device) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` on CUDA (ends every timed region), None on CPU."""
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else None
