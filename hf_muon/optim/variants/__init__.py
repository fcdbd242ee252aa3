"""Update-rule variants of the staged step: each a *prepare* (on the direction, before Newton-Schulz) and/or a
*transform* (on the orthogonalized update, before it is applied), picked by the group's ``variant``::

    muon      O = NS(U)                                               (nothing added)
    normuon   O = NS(U);       Ô = O ⊘ (√v_row + ε),  v_row ← β2·v_row + (1−β2)·mean_row(O²)   (normuon.py)
    adamuon   O = NS(sign U);  Ô = O ⊘ (√V + ε),      V ← β2·V + (1−β2)·O²                     (adamuon.py)

then both rescale Ô to the Frobenius norm an exactly orthogonal matrix of its shape has, √min(m, n)
(:func:`rms_match`), and the apply stage multiplies by the group's α as for Muon. Under the default moonlight
scale (α = 0.2·√max(m, n)) that is exactly the papers' RMS alignment, ``η̂ = 0.2·η·√(mn)/‖Ô‖_F`` (NorMuon
arXiv 2510.05491 Algorithm 1; AdaMuon arXiv 2507.11005), so AdamW's lr and weight decay carry over; under the
other modes it is the mode's size for an orthogonal update. For a split weight (``per_head``, ``split_fused``)
each block is matched to its own orthogonal norm times its scale ratio, so a split NorMuon/AdaMuon update is
sized as the separate matrices' would be. The row statistics of NorMuon are per output neuron: rows of
``nn.Linear`` weights, columns of transposed (GPT-2 ``Conv1D``) ones.

State (see :mod:`hf_muon.optim.state`): ``normuon_v`` (one value per output neuron, shaped to broadcast over the
matrix) and ``adamuon_v`` (one per element), both in the momentum dtype policy. Everything is elementwise or a
reduction over one matrix, so DTensor results (FSDP2) go through DTensor's own ops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...ns.blocks import Split, assemble, blocks
from ..apply import block_ratios
from ..jobs import as_matrix
from ..state import momentum_dtype


@dataclass(frozen=True)
class Variant:
    prepare: Callable | None = None  # (group, directions) -> directions
    transform: Callable | None = None  # (group, states, params, ortho) -> ortho
    state_key: str | None = None  # its per-parameter state tensor, kept in the momentum dtype (optim.state)


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """fp32 for low-precision NS results, fp64 stays fp64."""
    return torch.promote_types(t.dtype, torch.float32)


def _match(x: torch.Tensor, target: float) -> torch.Tensor:
    """``x`` (…, m, n) with each matrix rescaled to Frobenius norm ``target`` (zero matrices stay zero)."""
    norm = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
    # a zero matrix gets factor 0, not target/tiny (= inf, and 0·inf = NaN)
    return x * torch.where(norm > 0, target / norm, 0.0)


def rms_match(x: torch.Tensor, group: dict, p: torch.Tensor) -> torch.Tensor:
    """Each matrix of ``x`` (a Muon matrix view of ``p``) at norm √min(m, n), each block of a split weight at its
    own orthogonal norm times the block's scale ratio."""
    split = Split.from_spec(group["split"])
    if split is None:
        return _match(x, min(x.shape[-2:]) ** 0.5)
    ratios = block_ratios(tuple(p.shape), split, group["transposed"], group["experts"], group["scale_mode"])
    parts = [_match(b, r * min(b.shape[-2:]) ** 0.5) for b, r in zip(blocks(x, split), ratios)]
    return assemble(parts, split, x.shape)


def neuron_dim(group: dict) -> int:
    """The matrix axis summed over for per-output-neuron statistics (-1 for (out, in) storage)."""
    return -2 if group["transposed"] else -1


def variant_state(st: dict, key: str, like: torch.Tensor, group: dict, p: torch.Tensor) -> torch.Tensor:
    """The variant's second-moment buffer (zeros shaped like ``like``), in the momentum dtype policy."""
    if key not in st:
        st[key] = torch.zeros_like(like, dtype=momentum_dtype(group, p))
    return st[key]


def matrices(group: dict, ortho: list) -> list[torch.Tensor]:
    return [as_matrix(o, group) for o in ortho]


def _registry() -> dict[str, Variant]:
    """The one registry: each variant module declares its functions and its state key. The names must be
    :data:`hf_muon.config.VARIANTS` (the knob's choices, which the lower config floor owns)."""
    from ...config import VARIANTS as NAMES
    from . import adamuon, normuon

    registry = {
        "muon": Variant(),
        "normuon": Variant(transform=normuon.transform, state_key=normuon.KEY),
        "adamuon": Variant(prepare=adamuon.prepare, transform=adamuon.transform, state_key=adamuon.KEY),
    }
    if tuple(registry) != tuple(NAMES):
        raise ImportError(f"hf_muon.optim.variants registers {tuple(registry)} but MuonConfig.variant offers {NAMES}")
    return registry


VARIANTS: dict[str, Variant] = _registry()
STATE_KEYS: tuple[str, ...] = tuple(v.state_key for v in VARIANTS.values() if v.state_key)

__all__ = ["STATE_KEYS", "VARIANTS", "Variant", "matrices", "neuron_dim", "rms_match", "variant_state", "work_dtype"]
