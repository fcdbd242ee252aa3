"""Update scale modes: the factor α in ``W ← W − lr·α·O`` for an orthogonalized update ``O``.

For a weight mapping ``d_in → d_out`` (``nn.Linear.weight`` is stored ``(d_out, d_in)``; GPT-2's
``Conv1D.weight`` is stored ``(d_in, d_out)``):

==============  ===============================  ==================================================
mode            α                                 source / meaning
==============  ===============================  ==================================================
``moonlight``   ``0.2·√max(d_out, d_in)``          Moonlight (arXiv 2502.16982, Eq. 4): a full-rank
                                                  ``O`` has RMS ``1/√max``, so the update RMS becomes
                                                  0.2 ≈ AdamW's. AdamW lr and weight decay transfer.
``keller``      ``√max(1, d_out/d_in)``            Keller Jordan's Muon / ``torch.optim.Muon``
                                                  "original"; needs ~0.02-scale learning rates.
``mup``         ``√(d_out/d_in)``                  spectral condition ‖ΔW‖₂ ∝ √(d_out/d_in) (Su
                                                  Jianlin; Bernstein): width-transferable lr.
``none``        ``1``                              the bare orthogonal update.
==============  ===============================  ==================================================

The moonlight mode is symmetric, so orientation does not matter there; keller and mup need it.
"""

from __future__ import annotations

import math
import warnings

SCALE_MODES = ("moonlight", "keller", "mup", "none")


def scale_factor(d_out: int, d_in: int, mode: str = "moonlight") -> float:
    """α for one matrix of a ``d_in → d_out`` map."""
    if mode == "moonlight":
        return 0.2 * math.sqrt(max(d_out, d_in))
    if mode == "keller":
        return math.sqrt(max(1.0, d_out / d_in))
    if mode == "mup":
        return math.sqrt(d_out / d_in)
    if mode == "none":
        return 1.0
    raise ValueError(f"unknown scale_mode {mode!r}; valid: {', '.join(SCALE_MODES)}")


def fan_out_in(shape, transposed: bool = False, experts: bool = False) -> tuple[int, int]:
    """``(d_out, d_in)`` of one matrix of a weight with this shape.

    2-D ``(out, in)``; ``experts=True`` means a stack ``(E, out, in)`` whose last two dims are the
    matrix; other ≥3-D weights are convolutions ``(out, in, k…)`` flattened to ``(out, in·∏k)``.
    ``transposed`` means the matrix is stored ``(in, out)`` (GPT-2 Conv1D, GPT-OSS experts).
    """
    shape = tuple(shape)
    if len(shape) == 2 or (experts and len(shape) == 3):
        rows, cols = shape[-2], shape[-1]
    elif len(shape) >= 3 and not experts:
        rows, cols = shape[0], math.prod(shape[1:])
    else:
        raise ValueError(f"no fan-out/fan-in for shape {shape} (experts={experts})")
    return (cols, rows) if transposed else (rows, cols)


def convert_lr(
    lr: float, shape, from_mode: str, to_mode: str, transposed: bool = False, experts: bool = False
) -> float:
    """The lr under ``to_mode`` that gives the same update as ``lr`` under ``from_mode`` for this shape."""
    d_out, d_in = fan_out_in(shape, transposed, experts)
    return lr * scale_factor(d_out, d_in, from_mode) / scale_factor(d_out, d_in, to_mode)


def check_lr(lr: float, mode: str, shape=None, stacklevel: int = 3) -> bool:
    """Warn when a Muon lr looks mis-scaled for ``mode``; returns True when a warning was issued.

    Moonlight-scaled updates have RMS ≈ 0.2·lr like AdamW, so AdamW-sized lrs (≈1e-5…1e-2) fit.
    keller/mup/none updates have RMS ≈ 1/√d, so they need lrs ≈ 0.2·√d larger (≈ 0.005…0.1).
    """
    if lr <= 0:
        return False
    if mode == "moonlight" and lr > 0.05:
        warnings.warn(
            f"Muon lr={lr:g} with scale_mode='moonlight' gives an update RMS of {0.2 * lr:g}; moonlight mode "
            "expects AdamW-sized learning rates (1e-5..1e-2). Use scale_mode='keller' for Keller-style lrs like 0.02.",
            stacklevel=stacklevel,
        )
        return True
    if mode in ("keller", "mup", "none") and lr < 1e-3:
        warnings.warn(
            f"Muon lr={lr:g} with scale_mode={mode!r} looks AdamW-sized: this mode's update RMS is about lr/√d, "
            "so it needs ~0.2·√d× (≈6-13×) larger lrs (Keller's default is 0.02). Use scale_mode='moonlight' "
            "to reuse AdamW learning rates, or hf_muon.convert_lr(...) to translate.",
            stacklevel=stacklevel,
        )
        return True
    return False
