"""Model-aware routing: which parameters Muon updates and which stay on AdamW.

Muon is for the hidden matrices of a network. Decisions are made from module types and HF model
metadata, and exclusions are by **tensor identity** (a tied ``lm_head.weight`` never shows up under its
own name in ``named_parameters()``), not by name patterns:

* AdamW: input and output embeddings (``get_input_embeddings`` / ``get_output_embeddings``, tied ones
  and PEFT ``modules_to_save`` copies included), every weight tied to an embedding (found from the modules
  holding it, in any registration order; weights shared across depth between hidden layers are routed as
  hidden matrices), ``nn.Embedding``, norms, biases,
  1-D and scalar parameters, heads outside the backbone (``base_model_prefix``: ``score``,
  ``classifier``, value heads), MoE routers (every weight inside a router module), other 2-D parameters that are not a Linear/Conv1D weight
  (Mamba ``A_log``, position tables, expert biases: their module does not multiply by them), LoRA factors
  under the default policy.
* Muon: 2-D weights of ``nn.Linear`` and GPT-2 ``Conv1D`` (stored ``(in, out)``: ``transposed``)
  inside the backbone; 3-D fused MoE expert stacks ``(E, out, in)`` (or transposed), per expert, unless
  ``moe_experts="adamw"`` (orientation from the module's ``is_transposed`` flag, else from how its code multiplies
  by the stack, :mod:`hf_muon.model.usage`: Llama-4's ``bmm(x, W)`` is ``(E, in, out)``); other ≥2-D parameters
  the module's code multiplies by as matrices (XLNet's ``einsum("ibh,hnd->ibnd", x, W)``, RecurrentGemma's
  per-head ``baddbmm`` blocks); convolution weights (flattened to ``(out, in·k·k)``) when ``conv="muon"``.
* A model without HF metadata (no ``get_output_embeddings``) has no sure output head: when its last
  ``nn.Linear`` lands on Muon, a warning names it and the ``exclude=`` that keeps it on AdamW.
* ``include`` / ``exclude`` regexes on parameter names override the above (exclude wins).
* ``split_fused=True`` (opt-in): fused projections (QKV, gate_up; see :mod:`hf_muon.model.fused`) are
  orthogonalized and scaled block by block, with the blocks derived from the model config.
* ``per_head=True`` (opt-in): q/k/v projections and fused QKV are orthogonalized head by head
  (:mod:`hf_muon.model.heads`; finer than ``split_fused``'s QKV split, which it replaces on those weights).
* ``qk_clip=τ`` does not change routing: the report marks the q/k weights QK-Clip will scale (both on Muon),
  and models it cannot serve (MLA, q/k norms) are refused here, before any training.

The knobs come from one :class:`hf_muon.MuonConfig`; what is read from the model once is in
:mod:`hf_muon.model.facts`, the per-parameter rules (one small predicate each) in :mod:`hf_muon.model.rules`.
:func:`hf_muon.param_groups` (:mod:`hf_muon.model.groups`) turns the routes into optimizer groups.
Nothing here imports ``peft`` or ``transformers``: their layer types are looked up only when the user's code
has already imported them (a PEFT adapter or a GPT-2 ``Conv1D`` cannot exist otherwise).
"""

from __future__ import annotations

import re
import warnings

from torch import nn

from ..config import MuonConfig, reject_unknown
from ..ns.tensors import FLAT_PARAM_HINT
from .facts import (
    conv1d_types,
    embedding_reasons,
    flat_param_error,
    lora_roles,
    num_experts,
    router_prefixes,
)
from .fused import detect
from .heads import attention_sites, head_split, refuse_mla
from .rules import ModelFacts, Route, Site, route_one
from .usage import output_blocks


def _compile(patterns) -> list[re.Pattern]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    out = []
    for pat in patterns:
        try:
            out.append(re.compile(pat))
        except re.error as e:
            raise ValueError(f"invalid routing regex {pat!r}: {e}") from None
    return out


def routing_config(config: MuonConfig | None = None, **knobs) -> MuonConfig:
    """``config`` (default :class:`hf_muon.MuonConfig`) with the routing knobs given as keyword arguments (None:
    not given) applied and validated; anything but a routing knob is a ``TypeError``, as a wrong keyword is."""
    cfg = config or MuonConfig()
    routing = cfg.routing_kwargs()
    reject_unknown(
        knobs,
        routing,
        what="route() got an unexpected keyword argument",
        listing="routing knobs",
        error=TypeError,
    )
    given = {
        k: list(v) if k in ("include", "exclude") and not isinstance(v, (str, list, tuple)) else v
        for k, v in knobs.items()
        if v is not None
    }
    for key in ("include", "exclude"):
        _compile(given.get(key))  # the routing-regex message, before MuonConfig's own check
    return cfg.replace(**given) if given else cfg


def route(model: nn.Module, config: MuonConfig | None = None, **knobs) -> list[Route]:
    """Decide a route for every parameter of ``model`` (frozen ones reported as ``"frozen"``). The routing knobs
    (``lora_policy``, ``moe_experts``, ``conv``, ``include``, ``exclude``, ``split_fused``, ``per_head``,
    ``qk_clip``) come from ``config`` (default :class:`hf_muon.MuonConfig`), overridden by keyword arguments."""
    cfg = routing_config(config, **knobs)
    flat = flat_param_error(model)
    if flat:
        raise ValueError(f"cannot route {flat}. {FLAT_PARAM_HINT}")
    ctx = _read_model(model, cfg)
    routes: list[Route] = []
    for site in _sites(model):
        r = route_one(ctx, site)
        if (cfg.split_fused or cfg.per_head) and r.kind == "muon":
            _split(ctx, model, site, r)
        routes.append(r)
    if cfg.qk_clip:
        _mark_qk_clip(model, routes, cfg.qk_clip)
    if not hasattr(model, "get_output_embeddings"):
        _warn_plain_head(model, routes, ctx.exclude)
    return routes


def _sites(model: nn.Module):
    """Every parameter once, at the first module that registers it."""
    seen: set[int] = set()
    for mod_name, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                yield Site(mod_name, mod, pname, p)


def _read_model(model: nn.Module, cfg: MuonConfig) -> ModelFacts:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hf_config = getattr(base, "config", None)
    if cfg.per_head:
        refuse_mla(hf_config, "per_head")
    core = getattr(base, getattr(base, "base_model_prefix", "") or "", None)
    core_ids = {id(p) for p in core.parameters()} if isinstance(core, nn.Module) and core is not base else None
    return ModelFacts(
        cfg=cfg,
        embeddings=embedding_reasons(model, base),
        core_ids=core_ids,
        lora=lora_roles(model),
        n_experts=num_experts(hf_config),
        conv1d=conv1d_types(),
        include=_compile(cfg.include),
        exclude=_compile(cfg.exclude),
        routers=router_prefixes(model),
        hf_config=hf_config,
    )


def _split(ctx: ModelFacts, model: nn.Module, s: Site, r: Route) -> None:
    """Block splits of a Muon weight: per head (``per_head``) first, else the fused blocks (``split_fused``)."""
    note = ""
    if ctx.cfg.per_head:
        r.split, note = head_split(r.name, s.p, ctx.hf_config, transposed=r.transposed, experts=r.experts)
    if r.split is None and ctx.cfg.split_fused:
        r.split, note = detect(
            r.name,
            s.mod,
            s.p,
            ctx.hf_config,
            transposed=r.transposed,
            experts=r.experts,
            blocks=_output_blocks(model, s.mod_name, s.mod, s.pname),
        )
    if r.split is not None:
        r.reason += f"; split {r.split.describe()}"
    elif note:
        r.reason += f"; {note}"


def _warn_plain_head(model: nn.Module, routes: list[Route], exc: list) -> None:
    """A model without HF metadata gives no sure output head: the last nn.Linear is the likely one. Say so when it
    lands on Muon, with the ``exclude=`` that keeps it on AdamW."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    by_name = {r.name: r for r in routes}
    r = by_name.get(f"{last}.weight" if last else "")
    if r is None or r.kind != "muon" or r.reason == "included by pattern":
        return
    warnings.warn(
        f"hf_muon: {r.name!r} {r.shape} is the last nn.Linear of a model without HF metadata "
        "(get_output_embeddings), likely its output head; it is routed to Muon. Output heads usually "
        f"belong on AdamW: pass exclude={'^' + re.escape(last) + '[.]'!r} to keep it there.",
        UserWarning,
        stacklevel=3,
    )


def _output_blocks(model: nn.Module, mod_name: str, mod: nn.Module, pname: str):
    """How the model's code cuts this weight's output: by its own module (an expert stack), or by the parent
    module that calls it (a Linear or expert module child)."""
    own = output_blocks(mod, pname)
    if own is not None or not mod_name:
        return own
    parent_name, _, child = mod_name.rpartition(".")
    return output_blocks(model.get_submodule(parent_name) if parent_name else model, child)


def _mark_qk_clip(model: nn.Module, routes: list[Route], tau: float) -> None:
    """Note on each q/k weight whether QK-Clip scales it (only heads whose q and k weights are both on Muon)."""
    by_id = {id(r.param): r for r in routes}
    for site in attention_sites(model):
        q, k = by_id.get(id(site.q.weight)), by_id.get(id(site.k.weight))
        if q is None or k is None:
            continue
        owned = q.kind == "muon" and k.kind == "muon"
        for r in {id(q): q, id(k): k}.values():
            r.reason += f"; QK-Clip τ={tau:g}" if owned else "; not QK-clipped (q and k not both on Muon)"


def routing_report(model_or_routes, **route_kwargs) -> str:
    """A table of name, shape, route and reason, followed by counts per route."""
    routes = model_or_routes if isinstance(model_or_routes, list) else route(model_or_routes, **route_kwargs)
    w = max([len(r.name) for r in routes] + [4])
    lines = [f"{'name':<{w}}  {'shape':<18} {'route':<6} reason", "-" * (w + 45)]
    for r in routes:
        lines.append(f"{r.name:<{w}}  {str(r.shape):<18} {r.kind:<6} {r.reason}")
    lines.append("-" * (w + 45))
    for kind in ("muon", "adamw", "frozen"):
        sel = [r for r in routes if r.kind == kind]
        lines.append(f"{kind:<6} {len(sel):>5} tensors {sum(r.param.numel() for r in sel):>13,} params")
    return "\n".join(lines)
