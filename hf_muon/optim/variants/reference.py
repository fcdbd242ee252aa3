"""Slow, obviously-correct float64 references of the update-rule variants and of QK-Clip, one matrix (one head,
one row) at a time, for the tests to compare the fast optimizer against. Written from the papers' formulas,
not from the fast code: explicit loops over experts, blocks (heads) and rows; no in-place ops, no batching.

``reference_variant_step`` (one parameter, 2-D ``(out, in)`` or transposed ``(in, out)``, or an ``(E, m, n)``
expert stack)::

    B ← μ·B + G ;  U = G + μ·B (Nesterov) or B ;  adamuon: U ← sign(U)
    per block b of the weight's split (the whole matrix without one):  O_b = NS(U_b)
    normuon: per output neuron r:  v_r ← β2·v_r + (1−β2)·mean(O[r]²) ;  Ô[r] = O[r] / (√v_r + ε)
    adamuon: per element:          V ← β2·V + (1−β2)·O² ;              Ô = O / (√V + ε)
    per block: Ô_b ← Ô_b·√min(m_b, n_b)/‖Ô_b‖_F            (muon: Ô = O)
    decay:  W ← W − lr·λ·W  (cautious: only where O·W ≥ 0, O the update before scaling)
    W ← W − lr·Σ_b α(block b's shape)·Ô_b

``reference_qk_clip``: the per-head QK-Clip rule of :mod:`hf_muon.optim.qk_clip` for separate q/k weights.
"""

from __future__ import annotations

import math

import torch

from ...ns.reference import reference_ns
from ...ns.scaling import fan_out_in, scale_factor


def _block_index(length: int, split) -> list[list[int]]:
    """Indices along the split axis of each block (block i: the i-th slice of every group)."""
    if split is None:
        return [list(range(length))]
    per = sum(split.sizes)
    out, start = [], 0
    for s in split.sizes:
        out.append([g * per + start + j for g in range(split.groups) for j in range(s)])
        start += s
    return out


def _one_matrix(
    W,
    G,
    state,
    lr,
    weight_decay,
    momentum,
    nesterov,
    ns_steps,
    coefficients,
    scale_mode,
    transposed,
    variant,
    beta2,
    eps,
    cautious_wd,
    split,
):
    B = momentum * state["buf"] + G
    U = G + momentum * B if nesterov else B
    if variant == "adamuon":
        U = torch.sign(U)
    axis = 1 if transposed else 0  # output neurons: rows of (out, in), columns of (in, out)
    idx = _block_index(W.shape[split.axis] if split is not None else W.shape[0], split)
    split_axis = (split.axis % 2) if split is not None else 0
    O = torch.zeros_like(W)
    for rows in idx:
        sub = U.index_select(split_axis, torch.tensor(rows))
        O.index_copy_(split_axis, torch.tensor(rows), reference_ns(sub, ns_steps, coefficients))
    new_state = {"buf": B}
    if variant == "normuon":
        v = state["v"].clone()
        out = torch.zeros_like(O)
        for r in range(W.shape[axis]):
            row = O.select(axis, r)
            v_r = beta2 * v.reshape(-1)[r] + (1 - beta2) * (row * row).mean()
            v.reshape(-1)[r] = v_r
            out.select(axis, r).copy_(row / (math.sqrt(float(v_r)) + eps))
        new_state["v"], O_hat = v, out
    elif variant == "adamuon":
        V = beta2 * state["v"] + (1 - beta2) * O * O
        new_state["v"], O_hat = V, O / (V.sqrt() + eps)
    else:
        O_hat = O
    update = torch.zeros_like(W)
    for rows in idx:
        t = torch.tensor(rows)
        blk = O_hat.index_select(split_axis, t)
        if variant != "muon":
            blk = blk * (min(blk.shape) ** 0.5 / blk.norm())
        alpha = scale_factor(*fan_out_in(tuple(blk.shape), transposed, False), scale_mode)
        update.index_copy_(split_axis, t, alpha * blk)
    if cautious_wd:
        decay = torch.where(O * W >= 0, W, torch.zeros_like(W))  # O and the scaled update agree in sign
    else:
        decay = W
    return W - lr * weight_decay * decay - lr * update, new_state


def reference_variant_step(
    weight,
    grad,
    state: dict,
    *,
    lr: float,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_steps: int = 5,
    coefficients="polar_express",
    scale_mode: str = "moonlight",
    transposed: bool = False,
    experts: bool = False,
    variant: str = "muon",
    beta2: float = 0.95,
    eps: float = 1e-8,
    cautious_wd: bool = False,
    split=None,
) -> tuple[torch.Tensor, dict]:
    """One step for one parameter; ``state`` holds ``buf`` (and ``v``: (out,) per neuron for normuon, the
    weight's shape for adamuon), float64; returns the new weight and state, inputs untouched."""
    W, G = (t.detach().to(torch.float64).clone() for t in (weight, grad))
    st = {k: v.detach().to(torch.float64).clone() for k, v in state.items()}
    kw = dict(
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        nesterov=nesterov,
        ns_steps=ns_steps,
        coefficients=coefficients,
        scale_mode=scale_mode,
        transposed=transposed,
        variant=variant,
        beta2=beta2,
        eps=eps,
        cautious_wd=cautious_wd,
        split=split,
    )
    if not experts:
        return _one_matrix(W, G, st, **kw)
    outs = [_one_matrix(W[e], G[e], {k: v[e] for k, v in st.items()}, **kw) for e in range(W.shape[0])]
    return torch.stack([o[0] for o in outs]), {k: torch.stack([o[1][k] for o in outs]) for k in outs[0][1]}


def reference_qk_clip(w_q, w_k, S, tau: float, heads: int, kv_heads: int, head_dim: int):
    """QK-Clip of separate q (heads·d, ·) and k (kv_heads·d, ·) weights for per-q-head maxima ``S``, float64."""
    Wq, Wk = w_q.detach().to(torch.float64).clone(), w_k.detach().to(torch.float64).clone()
    group = heads // kv_heads
    for h in range(heads):
        if S[h] > tau:
            Wq[h * head_dim : (h + 1) * head_dim] *= math.sqrt(tau / float(S[h]))
    for j in range(kv_heads):
        worst = max(float(S[h]) for h in range(j * group, (j + 1) * group))
        if worst > tau:
            Wk[j * head_dim : (j + 1) * head_dim] *= math.sqrt(tau / worst)
    return Wq, Wk


__all__ = ["reference_qk_clip", "reference_variant_step"]
