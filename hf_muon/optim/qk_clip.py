"""QK-Clip (MuonClip, Kimi K2, arXiv 2507.20534 §2.1): after each optimizer step, shrink the q/k weights of every
attention head whose max pre-softmax logit in the step's forward passes exceeded τ (``qk_clip=τ``, logit units;
K2 uses 100).

For query head h with max logit S_h > τ (over the step's training forwards: every micro-batch of a gradient
accumulation window, and every rank: the maxima are ``all_reduce``'d with MAX when a process group of more than
one rank exists and ``distributed != "none"``), with γ_h = τ / S_h::

    MHA (Kimi K2):  W_q[h] ← √γ_h · W_q[h]        W_k[h] ← √γ_h · W_k[h]
    GQA:            W_q[h] ← √γ_h · W_q[h]        W_k[j] ← √γ_j · W_k[j],   γ_j = min over the q heads h
                                                   sharing kv head j of γ_h  (= τ / max_{h∈j} S_h)

so every clipped head's logits shrink by at least γ_h (q·k scales by √γ_h·√γ_j ≤ γ_h) and, for MHA, by exactly
γ_h as in K2. A kv head is scaled only when one of its query heads is clipped; its unclipped query heads then
also see their logits shrink by √γ_j (their q rows are not touched). W[h] are head h's ``head_dim`` output
features (:mod:`hf_muon.model.heads`: separate q/k projections, Phi-3 ``qkv_proj``, GPT-NeoX
``query_key_value``, GPT-2 ``c_attn``); v is never scaled. Exact for bias-free projections with RoPE (a linear
map of q and k); a q/k bias is an AdamW parameter and is not scaled (the bound then holds for the weight part).
MLA and q/k-norm models are refused (:mod:`hf_muon.model.heads` says why).

Only heads whose q *and* k weights are on Muon are watched and scaled (Muon's updates are what let the logits
grow; weights owned by AdamW are never touched). The logits come from :mod:`hf_muon.model.logits` (which says
what the capture costs per attention implementation). The clip runs in ``torch``'s step post-hook, after
``step()``; a step where every Muon group has lr = 0 (DCP's fake step, an lr-0 warmup step) clips nothing and
keeps the maxima for the next step. :attr:`QKClip.last` holds the step's counts (``qk_clip_heads_clipped``,
``qk_clip_heads``, ``qk_clip_max_logit``), also merged into ``Muon.last_stats`` for the diagnostics callback.
Under FSDP2 the per-row scale is a replicated DTensor multiplied into the sharded weight.

A recorded max logit of +inf or NaN (the forward itself overflowed) cannot be clipped to τ: under
``nonfinite="error"`` a step pre-hook raises, naming the attention module and head, before the step writes
anything; under ``nonfinite="skip"`` those heads are left unscaled and counted in ``qk_clip_heads_nonfinite``.
"""

from __future__ import annotations

import torch

from ..model.heads import Site, attention_sites
from ..model.logits import LogitMax
from .jobs import is_dtensor


def head_scales(S: torch.Tensor, tau: float, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(√γ per q head, √γ per kv head, clipped mask) from per-q-head maxima ``S`` (H,)."""
    clipped = torch.isfinite(S) & (S > tau)  # +inf/NaN are refused or counted before this (QKClip)
    gamma = torch.where(clipped, tau / torch.where(clipped, S, torch.ones_like(S)), torch.ones_like(S))
    return gamma.sqrt(), gamma.view(-1, group).amin(dim=1).sqrt(), clipped


def _scale_(w: torch.Tensor, axis: int, scale: torch.Tensor) -> None:
    shape = [1] * w.ndim
    shape[axis] = -1
    s = scale.to(device=w.device, dtype=w.dtype).view(shape)
    if is_dtensor(w):
        from torch.distributed.tensor import DTensor, Replicate

        s = DTensor.from_local(s, w.device_mesh, [Replicate()] * w.device_mesh.ndim)
    w.mul_(s)


def clip_site_(site: Site, S: torch.Tensor, tau: float) -> int:
    """Scale one site's q/k weights for maxima ``S``; returns the number of clipped query heads."""
    q_s, k_s, clipped = head_scales(S.float().cpu(), tau, site.heads.group)
    if not bool(clipped.any()):
        return 0
    scales = {}
    for side, per_head in ((site.q, q_s), (site.k, k_s)):
        w = side.weight
        vec = scales.setdefault(id(w), (w, side.axis, torch.ones(w.shape[side.axis])))[2]
        vec[side.index.flatten()] *= per_head.repeat_interleave(side.index.shape[1])
    for w, axis, vec in scales.values():
        with torch.no_grad():
            _scale_(w, axis, vec)
    return int(clipped.sum())


class QKClip:
    """The QK-Clip post-step hook of one :class:`hf_muon.Muon` (built by it when ``config.qk_clip > 0``)."""

    def __init__(self, optimizer, model, tau: float):
        muon = {id(p) for g in optimizer.param_groups if g["use_muon"] for p in g["params"]}
        self.sites = [s for s in attention_sites(model) if id(s.q.weight) in muon and id(s.k.weight) in muon]
        if not self.sites:
            raise ValueError(
                "qk_clip: no attention module of this model has both its q and k weights on Muon "
                "(known layouts: q_proj/k_proj, query/key, Phi-3 qkv_proj, GPT-NeoX query_key_value, "
                "GPT-2 c_attn); nothing to clip"
            )
        self.tau = float(tau)
        self.logits = LogitMax(model, [s.module for s in self.sites])
        self.last: dict = {}
        self.maxima: torch.Tensor | None = None  # (sites, heads) maxima of the last clip step, after the all_reduce
        self.handle = optimizer.register_step_post_hook(self._after_step)
        self.names = {id(m): n for n, m in model.named_modules()}
        self.pre_handle = optimizer.register_step_pre_hook(self._before_step)

    def _before_step(self, optimizer, args, kwargs) -> None:
        """Refuse (nonfinite="error") a step whose forwards recorded a +inf/NaN max logit."""
        if any(g["nonfinite"] == "skip" for g in optimizer.param_groups if g["use_muon"]):
            return
        for site, v in zip(self.sites, self.logits.values):
            bad = [] if v is None else (torch.isnan(v) | (v == float("inf"))).nonzero().flatten().tolist()
            if bad:
                name = self.names.get(id(site.module), type(site.module).__name__)
                raise FloatingPointError(
                    f"qk_clip: attention module {name!r} head {bad[0]} recorded a max logit of {float(v[bad[0]])} in "
                    f"this step's forwards ({len(bad)} head(s) non-finite); QK-Clip cannot bound it, nothing was "
                    "updated. Lower the lr, or pass nonfinite='skip' to count such heads and leave them unscaled."
                )

    def _maxima(self, optimizer, values: list) -> torch.Tensor:
        H = self.sites[0].heads.heads
        ref = next(v for v in values if v is not None)
        S = torch.stack([torch.full((H,), float("-inf"), device=ref.device) if v is None else v for v in values])
        import torch.distributed as dist

        if (
            optimizer.distributed != "none"
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size(optimizer.process_group) > 1
        ):
            dist.all_reduce(S, op=dist.ReduceOp.MAX, group=optimizer.process_group)
        return S

    def _after_step(self, optimizer, args, kwargs) -> None:
        if all(float(g["lr"]) == 0.0 for g in optimizer.param_groups if g["use_muon"]):
            return
        values = self.logits.take()
        n_heads = sum(s.heads.heads for s in self.sites)
        self.last = {"qk_clip_heads_clipped": 0, "qk_clip_heads": n_heads}
        if any(v is not None for v in values):
            S = self.maxima = self._maxima(optimizer, values)
            self.last["qk_clip_heads_clipped"] = sum(clip_site_(s, m, self.tau) for s, m in zip(self.sites, S))
            self.last["qk_clip_heads_nonfinite"] = int((torch.isnan(S) | (S == float("inf"))).sum())
            finite = S[torch.isfinite(S)]
            if finite.numel():
                self.last["qk_clip_max_logit"] = float(finite.max())
        if optimizer.track_stats:
            optimizer.last_stats.update(self.last)

    def remove(self) -> None:
        """Detach from the optimizer and the model (the model gets its attention implementation back)."""
        self.handle.remove()
        self.pre_handle.remove()
        self.logits.remove()


__all__ = ["QKClip", "clip_site_", "head_scales"]
