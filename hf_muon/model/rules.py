"""The routing rules: one small predicate each over (what routing read from the model, one parameter), tried in
order by :func:`route_one`; the first that holds sets the route. :func:`hf_muon.route` applies them to every
parameter (:mod:`hf_muon.model.routing`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ..config import MuonConfig
from ..ns.blocks import Split
from .facts import is_experts, is_norm, is_router
from .usage import use_of


@dataclass
class Route:
    name: str
    param: torch.Tensor
    kind: str  # "muon" | "adamw" | "frozen"
    reason: str
    decay: bool = True
    transposed: bool = False
    experts: bool = False
    split: Split | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.param.shape)


@dataclass
class Site:
    """One parameter where its module registered it: what every rule looks at."""

    mod_name: str
    mod: nn.Module
    pname: str
    p: torch.Tensor

    @property
    def name(self) -> str:
        return f"{self.mod_name}.{self.pname}" if self.mod_name else self.pname


@dataclass
class ModelFacts:
    """What routing reads from the model once, before the per-parameter rules."""

    cfg: MuonConfig
    embeddings: dict[int, str]
    core_ids: set[int] | None
    lora: dict[int, str]
    n_experts: int | None
    conv1d: tuple[type, ...]
    include: list[re.Pattern]
    exclude: list[re.Pattern]
    routers: tuple[str, ...]
    hf_config: object


# ------------------------------------------------------------------ the rules, first match wins
# Each rule is a predicate over (the model's facts, one parameter) that, when it holds, sets the route's kind and
# reason and returns True. A parameter no rule takes is routed by how its module's code uses it (_route_by_use).


def _frozen(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if s.p.requires_grad:
        return False
    r.kind, r.reason = "frozen", "requires_grad=False (not optimized)"
    return True


def _excluded(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not any(x.search(s.name) for x in ctx.exclude):
        return False
    r.reason = "excluded by pattern"
    return True


def _included(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not any(x.search(s.name) for x in ctx.include):
        return False
    if s.p.ndim < 2:
        raise ValueError(f"include pattern matched {s.name!r} of shape {tuple(s.p.shape)}: Muon needs ≥2-D weights")
    r.kind, r.reason = "muon", "included by pattern"
    r.transposed = isinstance(s.mod, ctx.conv1d) if ctx.conv1d else False
    r.experts = is_experts(s.mod, s.p)
    if r.experts:
        r.transposed = bool(getattr(s.mod, "is_transposed", False))
    return True


def _embedding_or_tied(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if id(s.p) not in ctx.embeddings:
        return False
    r.reason = ctx.embeddings[id(s.p)]
    return True


def _modules_to_save(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if "modules_to_save" not in s.name:
        return False
    r.reason = "PEFT modules_to_save copy"
    return True


def _lora_factor(ctx: ModelFacts, s: Site, r: Route) -> bool:
    role = ctx.lora.get(id(s.p))
    if role is None:
        return False
    policy = ctx.cfg.lora_policy
    wants = (policy == "both" and role in ("lora_A", "lora_B")) or (policy == "b_only" and role == "lora_B")
    if wants and s.p.ndim == 2:
        r.kind = "muon"
    r.reason = f"LoRA {role} (policy {policy})"
    if r.kind != "muon" and role.startswith("stacked_"):
        r.reason = "LoRA on stacked MoE experts (ParamWrapper): kept on AdamW"
    return True


def _below_2d(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if s.p.ndim >= 2:
        return False
    norm = is_norm(s.mod)
    r.reason = f"norm {s.pname}" if norm else ("bias" if s.pname.endswith("bias") else f"{s.p.ndim}-D parameter")
    return True


def _embedding_module(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not isinstance(s.mod, nn.Embedding):
        return False
    r.reason = "embedding"
    return True


def _outside_backbone(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if ctx.core_ids is None or id(s.p) in ctx.core_ids:
        return False
    r.reason = "head outside the backbone"
    return True


def _moe_router(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not is_router(s.mod_name, s.mod, ctx.n_experts, ctx.routers) or is_experts(s.mod, s.p):
        return False
    r.reason = "MoE router"
    return True


def _moe_experts(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not is_experts(s.mod, s.p):
        return False
    if ctx.cfg.moe_experts == "muon" and "bias" not in s.pname:
        r.kind, r.experts = "muon", True
        r.transposed, how = _expert_orientation(s.mod, s.pname)
        r.reason = "MoE experts, per expert" + (" (transposed)" if r.transposed else "") + how
    else:
        r.reason = "MoE experts (moe_experts='adamw')"
    return True


def _linear_weight(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not (s.pname == "weight" and s.p.ndim == 2 and isinstance(s.mod, nn.Linear)):
        return False
    r.kind, r.reason = "muon", "nn.Linear weight"
    return True


def _conv1d_weight(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not (s.pname == "weight" and s.p.ndim == 2 and ctx.conv1d and isinstance(s.mod, ctx.conv1d)):
        return False
    r.kind, r.reason, r.transposed = "muon", "Conv1D weight (in, out)", True
    return True


def _conv_weight(ctx: ModelFacts, s: Site, r: Route) -> bool:
    if not (s.pname == "weight" and s.p.ndim >= 3 and isinstance(s.mod, nn.modules.conv._ConvNd)):
        return False
    if ctx.cfg.conv == "muon":
        r.kind, r.reason = "muon", "conv weight, flattened to (out, in·k)"
    else:
        r.reason = "conv weight (conv='adamw')"
    return True


RULES = (
    _frozen,
    _excluded,
    _included,
    _embedding_or_tied,
    _modules_to_save,
    _lora_factor,
    _below_2d,
    _embedding_module,
    _outside_backbone,
    _moe_router,
    _moe_experts,
    _linear_weight,
    _conv1d_weight,
    _conv_weight,
)


def route_one(ctx: ModelFacts, s: Site) -> Route:
    r = Route(s.name, s.p, "adamw", "", decay=s.p.ndim >= 2 and not is_norm(s.mod))
    if not any(rule(ctx, s, r) for rule in RULES):
        _route_by_use(r, s.mod, s.pname, s.p)
    return r


def _expert_orientation(mod: nn.Module, pname: str) -> tuple[bool, str]:
    """An expert stack's orientation: the module's ``is_transposed`` flag, else how its code multiplies by it."""
    if hasattr(mod, "is_transposed"):
        return bool(mod.is_transposed), ""
    use = use_of(mod, pname, 3)
    return (use.transposed, f" (read from {use.how})") if use is not None else (False, "")


def _route_by_use(r: Route, mod: nn.Module, pname: str, p: torch.Tensor) -> None:
    """A ≥2-D parameter that is no Linear/Conv1D/expert weight: Muon when the module's code multiplies by it as a
    matrix (XLNet's einsum projections, RecurrentGemma's per-head gate blocks), else AdamW, saying so."""
    use = use_of(mod, pname, p.ndim)
    if use is None or (p.ndim > 3 and use.stacked):
        r.reason = f"{p.ndim}-D parameter that is not a Linear/Conv1D weight (its module does not multiply by it)"
        return
    r.kind, r.transposed, r.experts = "muon", use.transposed, use.stacked and p.ndim == 3
    r.reason = f"matrix product in {use.how}" + (", one matrix per leading index" if r.experts else "")
