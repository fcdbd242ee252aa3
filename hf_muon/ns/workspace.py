"""Scratch tensors the Newton-Schulz loop reuses from one optimizer step to the next (CPU only).

Why: on CPU, glibc serves blocks this large (≥ 128 KiB) with fresh ``mmap`` pages or gives the top of the heap
back after each step, so an NS product that allocates its result has the kernel fault in and zero every page
again on the next step. Keeping the intermediates here removes those faults without touching the process's
allocator (the page-fault and step-time measurements: benchmarks/RESULTS.md).

Rules:

* a scratch tensor is only valid inside the call that asked for it: what an NS function *returns* is always
  a fresh tensor (or the caller's own input), never scratch, so results can be kept across calls;
* ``tag`` names the role (``"stack"``, ``"ns.x0"``, ``"gram.A1"`` …); a caller never passes a scratch tensor as
  the ``out=`` of an op that also reads it (callers alternate two tags instead);
* per thread (two threads stepping two optimizers do not share buffers) and per inference-mode state (a buffer
  made under ``torch.inference_mode()`` cannot be written outside it);
* at most :data:`LIMIT_BYTES` per thread: a new buffer evicts the least recently used ones until it fits (shapes
  a model no longer produces age out), and one larger than the limit is a plain allocation;
* only on CPU: the CUDA caching allocator already reuses its blocks.

The cost: the buffers stay resident between steps (through forward and backward): every stack shape's input,
two X buffers and its m×m iterates. The optimizer also keeps its Nesterov mixes here
(:func:`hf_muon.optim.rules.momentum_`, tags ``direction.<group>.<i>``): 4 bytes per Muon parameter in fp32, so
Muon's memory stays at AdamW's level (its state is one buffer where AdamW keeps two). :func:`clear` gives them
back.
"""

from __future__ import annotations

import contextlib
import threading

import torch

LIMIT_BYTES = 512 << 20
_local = threading.local()


def scratch(tag: str, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor for ``tag``, reused by every later call with the same tag, shape and dtype."""
    if device.type != "cpu" or not getattr(_local, "enabled", True):
        return torch.empty(shape, dtype=dtype, device=device)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
        _local.bytes = 0
    key = (tag, tuple(shape), dtype, torch.is_inference_mode_enabled())
    t = bufs.pop(key, None)
    if t is None:
        t = torch.empty(shape, dtype=dtype, device=device)
        nbytes = t.nbytes
        if nbytes > LIMIT_BYTES:
            return t
        while bufs and _local.bytes + nbytes > LIMIT_BYTES:  # evict the least recently used
            _local.bytes -= bufs.pop(next(iter(bufs))).nbytes
        _local.bytes += nbytes
    bufs[key] = t  # (re)inserted last: dict order is the recency order
    return t


def held_bytes() -> int:
    """Bytes of scratch this thread holds."""
    return getattr(_local, "bytes", 0)


def clear() -> None:
    """Drop this thread's scratch tensors (they are rebuilt on the next call)."""
    _local.bufs = {}
    _local.bytes = 0


@contextlib.contextmanager
def disabled():
    """Within the block every :func:`scratch` call allocates afresh (the reference the tests compare with)."""
    before = getattr(_local, "enabled", True)
    _local.enabled = False
    try:
        yield
    finally:
        _local.enabled = before


__all__ = ["LIMIT_BYTES", "clear", "disabled", "held_bytes", "scratch"]
