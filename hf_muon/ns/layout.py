"""Tall matrices stay in their own memory layout: Newton-Schulz on the wide *view* of a tall tensor.

Newton-Schulz works on the wide orientation (m ≤ n, so ``A = XXᵀ`` is the small m×m matrix). A tall weight
(llama's ``gate_proj``/``up_proj`` (I, H), GPT-2's MLP ``c_proj``) used to be *copied* transposed into a wide
stack and its result read back transposed by the weight update. Both strided passes are slow on CPU (2-core
EPYC, 8 × 688×256 fp32 → bf16: normalise-into-stack 1.11 ms transposed against 0.30 ms in the piece's own
layout; the update's ``p.add_`` 0.54–0.69 ms against 0.14–0.21 ms).

So the stack keeps the tall layout, and the loop gets ``X = stack.mT``: a wide view whose ``.mT`` is contiguous.
The small-side products read it in place (``X @ X.mT`` is a BLAS call with transposed operands), and every
product that *writes* an X-shaped result is computed in the tall layout through the identity
``(M·X)ᵀ = Xᵀ·Mᵀ``: :func:`left_mul`. (Writing ``M @ X`` into ``out=`` a transposed view instead is no option:
torch computes it into a temporary and copies it back element by element, measured 3.6 s for 8 × 256×688.)
The result keeps the tall layout, so the caller's ``result.mT`` is contiguous in the weight's shape.
"""

from __future__ import annotations

import torch

from .workspace import scratch


def is_tall_view(X: torch.Tensor) -> bool:
    """True when ``X`` is the ``.mT`` of a contiguous tensor (and not contiguous itself)."""
    return X.ndim >= 2 and not X.is_contiguous() and X.mT.is_contiguous()


def like(X: torch.Tensor, tag: str | None = None) -> torch.Tensor:
    """An uninitialised tensor shaped and laid out like ``X`` (the scratch buffer ``tag``, or a fresh one)."""
    tall = is_tall_view(X)
    shape = X.mT.shape if tall else X.shape
    t = scratch(tag, shape, X.dtype, X.device) if tag else torch.empty(shape, dtype=X.dtype, device=X.device)
    return t.mT if tall else t


def left_mul(M: torch.Tensor, X: torch.Tensor, out: torch.Tensor, beta: float | None = None) -> torch.Tensor:
    """``out ← M·X`` (or ``β·X + M·X``), with ``out`` laid out like ``X`` (:func:`like`); returns ``out``."""
    batched = X.ndim == 3
    if is_tall_view(X):
        Xt, Mt, Ot = X.mT, M.mT, out.mT
        if beta is None:
            (torch.bmm if batched else torch.mm)(Xt, Mt, out=Ot)
        else:
            (torch.baddbmm if batched else torch.addmm)(Xt, Xt, Mt, beta=beta, alpha=1.0, out=Ot)
    elif beta is None:
        (torch.bmm if batched else torch.mm)(M, X, out=out)
    else:
        (torch.baddbmm if batched else torch.addmm)(X, M, X, beta=beta, alpha=1.0, out=out)
    return out


__all__ = ["is_tall_view", "left_mul", "like"]
