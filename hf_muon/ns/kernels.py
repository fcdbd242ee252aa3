"""Compiled elementwise kernels for the two memory-bound passes around Newton-Schulz (CPU).

Outside the matmuls, two passes touch every element of every Muon matrix:

* the **cast into the stack**: ``X₀ = U / (s·‖U‖_F)`` from the fp32 direction into the NS compute dtype (bf16
  on bf16-capable CPUs), transposed for tall matrices (:mod:`hf_muon.ns.batching`): :func:`scaled_cast_`;
* the **write**: ``W ← (1 − lr·λ)·W − lr·α·O`` (:mod:`hf_muon.optim.apply`), reading a bf16 ``O`` that is the
  transposed view of a stack slice for tall matrices: :func:`decay_add_`.

Eager torch is slow at both on CPU: a mixed-dtype op with a transposed operand runs as a strided scalar loop; a
division into a bf16 ``out`` first allocates an fp32 temporary of the whole matrix; the write is two passes
(decay, then add). ``torch.compile`` (inductor's C++ backend) emits vectorized, tiled loops with no temporary and
one pass for the write. It pays off for large matrices and costs more than it saves (guards, launch) for small
ones that stay in cache (the measurements: benchmarks/RESULTS.md).

Hence the policy (``kernels`` knob of :class:`hf_muon.MuonConfig`): ``"auto"`` compiles the pass of a matrix
with at least :data:`MIN_NUMEL` elements on CPU (plain tensors; DTensor shards and CUDA stay eager),
``"eager"`` never compiles. Whether compiling works is found on first use: if it raises (no C++ compiler, an
unsupported Python), one warning names the error and the process keeps the eager ops, which compute the same
values; the optimizer compiles both once on small tensors (:func:`probe`) at its first step that has a large
matrix, before anything is written, so even a warning turned into an error leaves that step undone, not half
done. Kernels are compiled with dynamic shapes: one compile per layout (seconds; inductor's on-disk cache makes
later processes faster), not per shape; scalars go in as tensors, so learning-rate schedules never recompile.
Both kernels equal the eager ops to fp32 rounding (the cast came out bit-identical; the fused write rounds once
where eager rounds twice).
"""

from __future__ import annotations

import threading
import warnings

import torch

KERNEL_MODES = ("auto", "eager")
MIN_NUMEL = 1 << 18
RECOMPILE_LIMIT = 64
_lock = threading.Lock()
_compiled: dict[str, object] = {}
_broken: dict[str, str] = {}
_probed: list[bool] = []


# what torch.compile traces (the eager fallbacks are the callers' own ops, so a fallback equals kernels="eager")
def _cast(out: torch.Tensor, src: torch.Tensor, norm: torch.Tensor) -> None:
    out.copy_(src / norm)


def _write(p: torch.Tensor, o: torch.Tensor, coef: torch.Tensor) -> None:
    p.mul_(coef[0]).add_(o.to(p.dtype) * coef[1])  # the product in p's dtype (fp32), not o's (bf16)


_SOURCES = {"cast": _cast, "write": _write}


def eligible(t: torch.Tensor, mode: str) -> bool:
    """Whether the pass over ``t`` goes to a compiled kernel: ``mode="auto"``, a plain CPU tensor (not a DTensor
    shard) whose matrices (the last two dims) have at least :data:`MIN_NUMEL` elements each: an expert stack
    ``(E, m, n)`` of small matrices stays eager (compiled as a whole tensor it is slower)."""
    if mode not in KERNEL_MODES:
        raise ValueError(f"unknown kernels mode {mode!r}; valid: {', '.join(KERNEL_MODES)}")
    per_matrix = t.shape[-2] * t.shape[-1] if t.ndim >= 2 else t.numel()
    return mode == "auto" and per_matrix >= MIN_NUMEL and t.device.type == "cpu" and type(t).__name__ != "DTensor"


def _run(name: str, eager, *args) -> None:
    """Kernel ``name`` on ``args`` compiled, or ``eager()`` (the ops of ``kernels="eager"``) when compiling does
    not work in this process.

    A compiled call that raises is retried eagerly (compilation fails before anything is written); when the eager
    ops then succeed, compiling is what failed: one warning, and this kernel stays eager from now on. When the
    eager ops raise too, that error (the caller's) propagates."""
    if name in _broken:
        eager()
        return
    try:
        _compile(name)(*args)
        return
    except Exception as e:  # noqa: BLE001 -- dynamo/inductor raise many types; the eager retry sorts them out
        error = e
    eager()
    _disable({name: error}, stacklevel=4)


def _compile(name: str):
    """The compiled kernel (built once per process), called with dynamo's recompile limit raised: one cache entry
    per layout (dtypes, ndim and size-1 dims are specialised), and a process stepping several models can pass
    dynamo's default of 8, which under ``fullgraph=True`` is an error."""
    call = _compiled.get(name)
    if call is None:
        with _lock:
            call = _compiled.get(name)
            if call is None:
                import torch._dynamo.config as dynamo_config

                fn = torch.compile(_SOURCES[name], dynamic=True, fullgraph=True)

                def call(*args):
                    with dynamo_config.patch(recompile_limit=RECOMPILE_LIMIT):
                        fn(*args)

                _compiled[name] = call
    return call


def _disable(failed: dict[str, Exception], stacklevel: int) -> None:
    for name, error in failed.items():
        _broken[name] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
    what = "; ".join(f"{name!r}: {_broken[name]}" for name in failed)
    warnings.warn(
        f"hf_muon: torch.compile of the {' and '.join(map(repr, failed))} kernel failed here ({what}); "
        "this process uses the eager ops (same values, slower). kernels='eager' skips the attempt.",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


def probe() -> None:
    """Compile both kernels once on small tensors, so that a compiler that does not work here is found (and
    warned about, once for both) before an optimizer step writes anything; a no-op after the first call."""
    if _probed:
        return
    _probed.append(True)
    args = {
        "cast": (torch.empty(8, 16, dtype=torch.bfloat16), torch.ones(8, 16), torch.full((1, 1), 2.0)),
        "write": (torch.ones(8, 16), torch.ones(8, 16, dtype=torch.bfloat16), torch.tensor([0.5, 0.25])),
    }
    failed = {}
    for name, a in args.items():
        if name not in _broken:
            try:
                _compile(name)(*a)
            except Exception as e:  # noqa: BLE001
                failed[name] = e
    if failed:
        _disable(failed, stacklevel=4)


def scaled_cast_(out: torch.Tensor, src: torch.Tensor, norm: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """``out ← src / norm`` in ``out``'s dtype (the quotient in fp32, rounded once); ``src`` in any layout."""

    def eager():
        torch.div(src, norm, out=out)

    if eligible(src, mode):
        _run("cast", eager, out, src, norm)
    else:
        eager()
    return out


def one_pass_write(p: torch.Tensor, mode: str) -> bool:
    """Whether :func:`decay_add_` writes ``p`` in one compiled pass (an fp32 :func:`eligible` parameter)."""
    return p.dtype == torch.float32 and eligible(p, mode)


def decay_add_(p: torch.Tensor, o: torch.Tensor, decay: float, alpha: float, mode: str = "auto") -> torch.Tensor:
    """``p ← decay·p + alpha·o`` (``o`` in any layout and dtype, viewed as ``p``'s shape): one compiled pass where
    :func:`one_pass_write`, else ``p.mul_(decay)`` (skipped at 1) then ``p.add_(o, alpha=alpha)``."""
    o = o.reshape(p.shape)

    def eager():
        if decay != 1.0:
            p.mul_(decay)
        p.add_(o, alpha=alpha)

    if one_pass_write(p, mode):
        _run("write", eager, p, o, torch.tensor([decay, alpha], dtype=torch.float32))
    else:
        eager()
    return p


def broken() -> dict[str, str]:
    """Kernels whose compilation failed in this process, with the error (empty when all work)."""
    return dict(_broken)


__all__ = ["KERNEL_MODES", "MIN_NUMEL", "broken", "decay_add_", "eligible", "one_pass_write", "probe", "scaled_cast_"]
