"""Orthogonalization: map a matrix ``G = U Σ Vᵀ`` to (an approximation of) ``U Vᵀ``.

Pure functions, no optimizer state. Inputs are shaped ``(..., m, n)``; leading dims are a batch.

``method="newton_schulz"`` (fast)
    ``X₀ = G / (s·‖G‖_F)`` then, for each ``(a, b, c)`` of the coefficient schedule,
    ``A = X Xᵀ;  X ← a·X + (b·A + c·A²)·X``. Each singular value follows the scalar quintic
    ``σ ← aσ + bσ³ + cσ⁵`` while the singular vectors stay put, so the result is ``U f(Σ) Vᵀ`` with
    ``f(σ) ≈ 1`` (Keller Jordan, *Muon* blog 2024; Polar Express, arXiv 2505.16932). Wide orientation
    (m ≤ n) keeps ``A`` at the small side: tall inputs are transposed in and out.
``method="svd"`` (exact reference)
    ``U Vᵀ`` from ``torch.linalg.svd`` in float64, with singular values below ``rcond·σ_max`` mapped to
    0 (as Newton-Schulz does with exact zeros). Slow; tests compare the fast path against it.

Normalisation guard: the divisor is ``max(s·‖G‖_F, eps)`` with ``eps`` the norm dtype's smallest normal number
by default, so a zero matrix yields zeros (never NaN), a tiny nonzero one is orthogonalized like any other (the
step is scale-free: ``G`` and ``2^k·G`` give the same result), and each matrix of a batch is normalised on its own. The norm is scale-safe (a Frobenius norm
past fp32's squared range, above or below, is taken as ``amax·‖G/amax‖_F``), so a huge finite ``G`` is orthogonalized like
``G/2^k``; a ``G`` holding NaN/±inf raises :class:`NonFiniteInput` instead of returning NaN.

Dtype policy ``"auto"``: bfloat16 on CUDA (tensor cores, the Keller/Moonlight setting). On CPU it
depends on the CPU: without native bf16 dot products, bf16 matmul runs 30-100× slower than fp32, so
float32; with them (x86 ``avx512_bf16`` / ``amx_bf16``, Arm ``bf16``) bf16 matmul is several times
*faster* than fp32 (benchmarks/RESULTS.md), so bfloat16.
``HF_MUON_CPU_NS_DTYPE=float32|bfloat16`` pins the CPU choice; float64 inputs stay float64. Pass a torch
dtype or one of ``"float32" | "bfloat16" | "float16" | "float64"`` to override per call.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch

from .coefficients import normalization_scale, schedule
from .gram import gram_iterate, restart_steps, use_gram
from .kernels import scaled_cast_
from .reference import svd_orthogonalize
from .workspace import scratch

_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float64": torch.float64,
    "fp64": torch.float64,
}
NS_DTYPES = ("auto",) + tuple(_DTYPE_NAMES)
METHODS = ("newton_schulz", "gram", "auto", "svd")
ITERATIVE = ("newton_schulz", "gram", "auto")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot-product instructions (read once from /proc/cpuinfo)."""
    pinned = os.environ.get("HF_MUON_CPU_NS_DTYPE")
    if pinned:
        if pinned not in ("float32", "bfloat16"):
            raise ValueError(f"HF_MUON_CPU_NS_DTYPE={pinned!r}; valid: float32, bfloat16")
        return pinned == "bfloat16"
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(
    dtype: str | torch.dtype | None, device: torch.device, input_dtype: torch.dtype, cpu_bf16: bool | None = None
) -> torch.dtype:
    """The compute dtype for Newton-Schulz under the ``"auto"`` policy or an explicit override. ``cpu_bf16``
    replaces this CPU's own answer (:func:`cpu_has_fast_bf16`): distributed backends pass rank 0's, so every
    rank resolves ``"auto"`` alike."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if input_dtype == torch.float64:
            return torch.float64
        if device.type == "cuda":
            return torch.bfloat16
        fast = cpu_has_fast_bf16() if cpu_bf16 is None else cpu_bf16
        return torch.bfloat16 if device.type == "cpu" and fast else torch.float32
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise ValueError(f"unknown ns dtype {dtype!r}; valid: {', '.join(NS_DTYPES)}") from None


class NonFiniteInput(FloatingPointError):
    """A matrix handed to orthogonalization holds NaN/±inf (``index``: its position in the pieces given)."""

    def __init__(self, index: int, shape: tuple):
        self.index = index
        super().__init__(f"orthogonalize: matrix {index} (shape {shape}) holds NaN or ±inf; nothing was written")


# Below this a fp32 Frobenius norm may have lost its squares to underflow (√tiny ≈ 1.1e-19)
_SMALL_NORM = 2.0**-60


def _unsafe(norm: torch.Tensor) -> torch.Tensor:
    return ~torch.isfinite(norm) | (norm < _SMALL_NORM)


def _all_safe(norms: torch.Tensor) -> bool:
    """Every norm finite and not underflowed: two compares and one sync (NaN fails both)."""
    return bool(((norms >= _SMALL_NORM) & (norms <= torch.finfo(norms.dtype).max)).all())


def _safe_frobenius(w: torch.Tensor, norm_dtype: torch.dtype, first: int) -> torch.Tensor:
    amax = torch.linalg.vector_norm(w, ord=float("inf"), dim=(-2, -1), keepdim=True, dtype=norm_dtype)
    bad = (~torch.isfinite(amax)).flatten().nonzero()
    if len(bad):
        raise NonFiniteInput(first + int(bad[0]), tuple(w.shape[-2:]))
    safe = amax.clamp_min(torch.finfo(norm_dtype).tiny)
    return torch.linalg.vector_norm(w / safe, dim=(-2, -1), keepdim=True, dtype=norm_dtype) * safe


def normalize_into(
    pieces: Sequence[torch.Tensor],
    out: torch.Tensor,
    coefficients="polar_express",
    eps: float | None = None,
    kernels: str = "auto",
) -> torch.Tensor:
    """Write each piece ``(c, m, n)`` divided by its per-matrix ``max(s·‖·‖_F, eps)`` into consecutive slices
    of ``out`` ``(B, m, n)`` (any dtype, e.g. bf16: the quotient is computed in at least fp32 and rounded once,
    as ``(X / norm).to(out.dtype)`` does, without an fp32 copy of the whole stack). The norm is an eager,
    scale-safe reduction; the division and cast is :func:`hf_muon.ns.kernels.scaled_cast_`
    (compiled under ``kernels`` "auto" for large matrices: a transposed piece is where eager is slowest).
    A piece holding NaN/±inf raises :class:`NonFiniteInput` (``index``: its matrix's position in ``out``)."""
    scale = normalization_scale(coefficients)
    norms, k = [], 0
    for w in pieces:
        # in at least fp32 so bf16 inputs do not overflow/underflow the reduction
        norm_dtype = torch.float64 if w.dtype == torch.float64 else torch.float32
        norm = torch.linalg.vector_norm(w, dim=(-2, -1), keepdim=True, dtype=norm_dtype)
        floor = torch.finfo(norm_dtype).tiny if eps is None else eps
        scaled_cast_(out[k : k + w.size(0)], w, (norm * scale).clamp_min(floor), kernels)
        norms.append(norm)
        k += w.size(0)
    # one check over the norms (not the matrices): past ‖w‖_F ≈ 1.8e19 the fp32 squares overflow, below ≈ 1e-19
    # they underflow; only then is the piece renormalised scale-safely (its scratch slice rewritten)
    if _all_safe(torch.cat(norms)):  # cat promotes mixed dtypes
        return out
    k = 0
    for w, norm in zip(pieces, norms):
        if bool(_unsafe(norm).any()):
            safe = _safe_frobenius(w, norm.dtype, k)
            floor = torch.finfo(norm.dtype).tiny if eps is None else eps
            scaled_cast_(out[k : k + w.size(0)], w, (safe * scale).clamp_min(floor), kernels)
        k += w.size(0)
    return out


# From this many elements per matrix on, the X-update runs matrix by matrix into two reused buffers: batched
# ``baddbmm`` first copies a·X for the whole stack, which costs more than batching saves for large matrices.
LOOP_NUMEL = 1 << 20


def ns_iterate(
    X: torch.Tensor, triples: Sequence[tuple[float, float, float]], method: str = "newton_schulz"
) -> torch.Tensor:
    """The Newton-Schulz loop on an already normalised, wide (m ≤ n) ``X`` of shape (m, n) or (B, m, n);
    ``method`` "gram" runs it in Gram space, "auto" picks per shape (see the module docstring). Intermediates
    live in reused scratch (:mod:`hf_muon.ns.workspace`); the result is a fresh tensor (``X`` itself for 0 steps)."""
    if method == "auto":
        method = "gram" if use_gram(X.size(-2), X.size(-1), len(triples), X.dtype) else "newton_schulz"
    if method == "gram":
        return gram_iterate(X, triples, restart_steps(len(triples), X.dtype, X.size(-2)))
    # a stack of large matrices: the Gram products stay batched, the X-update runs matrix by matrix (LOOP_NUMEL)
    per_matrix = X.ndim == 3 and X.size(0) > 1 and X.size(-2) * X.size(-1) >= LOOP_NUMEL
    mm, addmm = (torch.bmm, torch.baddbmm) if X.ndim == 3 else (torch.mm, torch.addmm)
    gram_shape = X.shape[:-1] + X.shape[-2:-1]
    A = scratch("ns.A", gram_shape, X.dtype, X.device)
    B = scratch("ns.B", gram_shape, X.dtype, X.device)
    last = len(triples) - 1
    for k, (a, b, c) in enumerate(triples):
        mm(X, X.mT, out=A)
        addmm(A, A, A, beta=b, alpha=c, out=B)  # b·A + c·A²
        Y = torch.empty_like(X) if k == last else scratch(f"ns.x{k % 2}", X.shape, X.dtype, X.device)
        if per_matrix:
            for i in range(X.size(0)):
                torch.addmm(X[i], B[i], X[i], beta=a, alpha=1.0, out=Y[i])
        else:
            addmm(X, B, X, beta=a, alpha=1.0, out=Y)  # a·X + B·X
        X = Y
    return X


def newton_schulz(
    G: torch.Tensor,
    steps: int = 5,
    coefficients: str | Sequence = "polar_express",
    dtype: str | torch.dtype | None = "auto",
    eps: float | None = None,
    method: str = "newton_schulz",
    kernels: str = "auto",
) -> torch.Tensor:
    """Newton-Schulz orthogonalization of ``G`` (..., m, n) (``method``: newton_schulz | gram | auto; ``kernels``:
    the cast into the compute dtype, :mod:`hf_muon.ns.kernels`); returns a tensor in the compute dtype."""
    if G.ndim < 2:
        raise ValueError(f"orthogonalize needs a (..., m, n) tensor, got shape {tuple(G.shape)}")
    compute = resolve_dtype(dtype, G.device, G.dtype)
    tall = G.size(-2) > G.size(-1)
    W = G.mT if tall else G
    lead, m, n = W.shape[:-2], W.size(-2), W.size(-1)
    pieces = W.reshape(-1, m, n)
    X = normalize_into([pieces], torch.empty(pieces.shape, dtype=compute, device=G.device), coefficients, eps, kernels)
    X = ns_iterate(X if X.size(0) > 1 else X[0], schedule(coefficients, steps), method).reshape(*lead, m, n)
    return X.mT if tall else X


def orthogonalize(
    G: torch.Tensor,
    steps: int = 5,
    coefficients: str | Sequence = "polar_express",
    dtype: str | torch.dtype | None = "auto",
    method: str = "newton_schulz",
    eps: float | None = None,
) -> torch.Tensor:
    """Orthogonalize ``G`` (..., m, n). See the module docstring for the math and the dtype policy.

    Returns the result in ``G``'s dtype.
    """
    if method in ITERATIVE:
        out = newton_schulz(G, steps=steps, coefficients=coefficients, dtype=dtype, eps=eps, method=method)
    elif method == "svd":
        out = svd_orthogonalize(G)
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    return out.to(G.dtype)
