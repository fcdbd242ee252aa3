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

:func:`hf_muon.param_groups` (:mod:`hf_muon.model.groups`) turns the routes into optimizer groups.
Nothing here imports ``peft`` or ``transformers``: their layer types are looked up only when the user's code
has already imported them (a PEFT adapter or a GPT-2 ``Conv1D`` cannot exist otherwise).
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import KNOBS, check
from ..ns.blocks import Split
from ..ns.tensors import FLAT_PARAM_HINT
from .fused import detect
from .heads import attention_sites, head_split, refuse_mla
from .usage import output_blocks, use_of


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


def _conv1d_types() -> tuple[type, ...]:
    if "transformers" not in sys.modules:  # GPT-2's Conv1D cannot exist unless transformers was imported
        return ()
    try:
        from transformers.pytorch_utils import Conv1D

        return (Conv1D,)
    except Exception:  # pragma: no cover - transformers is a dependency
        return ()


def _lora_roles(model: nn.Module) -> dict[int, str]:
    """id(param) -> 'lora_A' | 'lora_B' | 'lora_embedding_A' | ... for PEFT adapter parameters."""
    roles: dict[int, str] = {}
    if "peft" not in sys.modules:  # a PEFT adapter cannot exist unless peft was imported
        return roles
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except Exception:
        return roles
    for mod in model.modules():
        if not isinstance(mod, BaseTunerLayer):
            continue
        stacked = type(mod).__name__ == "ParamWrapper"
        for attr in getattr(mod, "adapter_layer_names", ()):
            sub = getattr(mod, attr, None)
            if sub is None:
                continue
            params = sub.parameters() if isinstance(sub, nn.Module) else ()
            for p in params:
                roles[id(p)] = ("stacked_" if stacked else "") + attr
    return roles


def _flat_param_error(model: nn.Module) -> str | None:
    for name, p in model.named_parameters():
        # torch's FlatParameter reports type name "Parameter" (metaclass); it carries `_is_flat_param`.
        if getattr(p, "_is_flat_param", False) or type(p).__name__ == "FlatParameter" or "_flat_param" in name:
            return f"{name!r} is an FSDP v1 FlatParameter"
        if hasattr(p, "ds_id") or hasattr(p, "ds_numel"):
            return f"{name!r} is a DeepSpeed ZeRO partitioned parameter"
    return None


def _is_norm(mod: nn.Module) -> bool:
    return isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.BatchNorm1d, nn.BatchNorm2d)) or "norm" in type(
        mod
    ).__name__.lower()


def _num_experts(config) -> int | None:
    for key in ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _is_router_class(mod: nn.Module) -> bool:
    cls = type(mod).__name__.lower()
    return "router" in cls or "gating" in cls or cls.endswith("gate")


def _router_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Module paths of router modules: every weight inside one (jetmoe ``router.layer``, longcat
    ``router.classifier``, zaya ``router_mlp.*``) scores experts, whatever its own leaf is called."""
    return tuple(f"{n}." for n, m in model.named_modules() if n and _is_router_class(m))


def _owners(model: nn.Module) -> dict[int, list[nn.Module]]:
    """id(param) -> the distinct modules that hold it (two or more: a tied weight)."""
    out: dict[int, list[nn.Module]] = {}
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            users = out.setdefault(id(p), [])
            if all(u is not mod for u in users):
                users.append(mod)
    return out


def _is_router(mod_name: str, mod: nn.Module, n_experts: int | None, routers: tuple[str, ...] = ()) -> bool:
    if _is_router_class(mod) or (routers and f"{mod_name}.".startswith(routers)):
        return True
    last = mod_name.rsplit(".", 1)[-1]
    return (
        isinstance(mod, nn.Linear)
        and n_experts is not None
        and mod.out_features == n_experts
        and last in ("gate", "router", "gating", "wg")
    )


def _is_experts(mod: nn.Module, p: torch.Tensor) -> bool:
    return p.ndim == 3 and (hasattr(mod, "is_transposed") or "expert" in type(mod).__name__.lower())


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


def route(
    model: nn.Module,
    *,
    lora_policy: str | None = None,
    moe_experts: str | None = None,
    conv: str | None = None,
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    split_fused: bool | None = None,
    per_head: bool | None = None,
    qk_clip: float | None = None,
) -> list[Route]:
    """Decide a route for every parameter of ``model`` (frozen ones reported as ``"frozen"``). A knob left at
    ``None`` takes its :class:`hf_muon.MuonConfig` default."""
    d = {k: f.default for k, f in KNOBS.items()}
    lora_policy = d["lora_policy"] if lora_policy is None else lora_policy
    moe_experts = d["moe_experts"] if moe_experts is None else moe_experts
    conv = d["conv"] if conv is None else conv
    split_fused = d["split_fused"] if split_fused is None else split_fused
    per_head = d["per_head"] if per_head is None else per_head
    qk_clip = d["qk_clip"] if qk_clip is None else qk_clip
    for key, val in (("lora_policy", lora_policy), ("moe_experts", moe_experts), ("conv", conv),
                     ("split_fused", split_fused), ("per_head", per_head), ("qk_clip", qk_clip)):
        check(key, val)
    flat = _flat_param_error(model)
    if flat:
        raise ValueError(f"cannot route {flat}. {FLAT_PARAM_HINT}")

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if per_head:
        refuse_mla(getattr(base, "config", None), "per_head")
    embeddings: dict[int, str] = {}
    for getter, label in (("get_input_embeddings", "input embedding"), ("get_output_embeddings", "output embedding")):
        try:
            mod = getattr(model, getter)()
        except (AttributeError, NotImplementedError):
            mod = None
        for p in mod.parameters() if isinstance(mod, nn.Module) else ():
            if p.ndim >= 2:
                prev = embeddings.get(id(p))
                embeddings[id(p)] = label if prev in (None, label) else "input and output embedding (tied)"
    owners = _owners(model)
    # a weight tied to an embedding stays on AdamW whichever module registered it first; weights shared across
    # depth between hidden layers (zamba's shared block) are hidden matrices and routed as such
    for pid, users in owners.items():
        if len(users) > 1 and any(isinstance(u, nn.Embedding) for u in users):
            embeddings.setdefault(pid, "tied to an embedding")
    for tgt, src in (getattr(base, "all_tied_weights_keys", None) or {}).items():
        try:
            ids = [id(base.get_parameter(n)) for n in (tgt, src)]
        except (AttributeError, KeyError):
            continue
        if any(i in embeddings for i in ids) or any(isinstance(u, nn.Embedding) for i in ids
                                                    for u in owners.get(i, ())):
            for i in ids:
                embeddings.setdefault(i, "tied weight")
    core = getattr(base, getattr(base, "base_model_prefix", "") or "", None)
    core_ids = {id(p) for p in core.parameters()} if isinstance(core, nn.Module) and core is not base else None
    lora = _lora_roles(model)
    n_experts = _num_experts(getattr(base, "config", None))
    conv1d = _conv1d_types()
    inc, exc = _compile(include), _compile(exclude)
    routers = _router_prefixes(model)

    routes: list[Route] = []
    seen: set[int] = set()
    for mod_name, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{pname}" if mod_name else pname
            decay = p.ndim >= 2 and not _is_norm(mod)
            r = Route(name, p, "adamw", "", decay=decay)
            if not p.requires_grad:
                r.kind, r.reason = "frozen", "requires_grad=False (not optimized)"
            elif any(x.search(name) for x in exc):
                r.reason = "excluded by pattern"
            elif any(x.search(name) for x in inc):
                if p.ndim < 2:
                    raise ValueError(f"include pattern matched {name!r} of shape {tuple(p.shape)}: Muon needs ≥2-D weights")
                r.kind, r.reason = "muon", "included by pattern"
                r.transposed = isinstance(mod, conv1d) if conv1d else False
                r.experts = _is_experts(mod, p)
                if r.experts:
                    r.transposed = bool(getattr(mod, "is_transposed", False))
            elif id(p) in embeddings:
                r.reason = embeddings[id(p)]
            elif "modules_to_save" in name:
                r.reason = "PEFT modules_to_save copy"
            elif id(p) in lora:
                role = lora[id(p)]
                wants = (lora_policy == "both" and role in ("lora_A", "lora_B")) or (
                    lora_policy == "b_only" and role == "lora_B"
                )
                if wants and p.ndim == 2:
                    r.kind, r.reason = "muon", f"LoRA {role} (policy {lora_policy})"
                else:
                    r.reason = f"LoRA {role} (policy {lora_policy})" if not role.startswith("stacked_") else (
                        "LoRA on stacked MoE experts (ParamWrapper): kept on AdamW"
                    )
            elif p.ndim < 2:
                r.reason = f"norm {pname}" if _is_norm(mod) else ("bias" if pname.endswith("bias") else f"{p.ndim}-D parameter")
            elif isinstance(mod, nn.Embedding):
                r.reason = "embedding"
            elif core_ids is not None and id(p) not in core_ids:
                r.reason = "head outside the backbone"
            elif _is_router(mod_name, mod, n_experts, routers) and not _is_experts(mod, p):
                r.reason = "MoE router"
            elif _is_experts(mod, p):
                if moe_experts == "muon" and "bias" not in pname:
                    r.kind, r.experts = "muon", True
                    r.transposed, how = _expert_orientation(mod, pname)
                    r.reason = "MoE experts, per expert" + (" (transposed)" if r.transposed else "") + how
                else:
                    r.reason = "MoE experts (moe_experts='adamw')"
            elif pname == "weight" and p.ndim == 2 and isinstance(mod, nn.Linear):
                r.kind, r.reason = "muon", "nn.Linear weight"
            elif pname == "weight" and p.ndim == 2 and conv1d and isinstance(mod, conv1d):
                r.kind, r.reason, r.transposed = "muon", "Conv1D weight (in, out)", True
            elif pname == "weight" and p.ndim >= 3 and isinstance(mod, nn.modules.conv._ConvNd):
                if conv == "muon":
                    r.kind, r.reason = "muon", "conv weight, flattened to (out, in·k)"
                else:
                    r.reason = "conv weight (conv='adamw')"
            else:
                _route_by_use(r, mod, pname, p)
            if (split_fused or per_head) and r.kind == "muon":
                config = getattr(base, "config", None)
                r.split, note = head_split(name, p, config, transposed=r.transposed, experts=r.experts) \
                    if per_head else (None, "")
                if r.split is None and split_fused:
                    r.split, note = detect(name, mod, p, config, transposed=r.transposed, experts=r.experts,
                                           blocks=_output_blocks(model, mod_name, mod, pname))
                if r.split is not None:
                    r.reason += f"; split {r.split.describe()}"
                elif note:
                    r.reason += f"; {note}"
            routes.append(r)
    if qk_clip:
        _mark_qk_clip(model, routes, qk_clip)
    if not hasattr(model, "get_output_embeddings"):
        _warn_plain_head(model, routes, exc)
    return routes


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
    warnings.warn(f"hf_muon: {r.name!r} {r.shape} is the last nn.Linear of a model without HF metadata "
                  "(get_output_embeddings), likely its output head; it is routed to Muon. Output heads usually "
                  f"belong on AdamW: pass exclude={'^' + re.escape(last) + '[.]'!r} to keep it there.",
                  UserWarning, stacklevel=3)


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
