"""Model-aware routing: which parameters Muon updates and which stay on AdamW.

Muon is for the hidden matrices of a network. Decisions are made from module types and HF model
metadata, and exclusions are by **tensor identity** (a tied ``lm_head.weight`` never shows up under its
own name in ``named_parameters()``), not by name patterns:

* AdamW: input and output embeddings (``get_input_embeddings`` / ``get_output_embeddings``, tied ones
  and PEFT ``modules_to_save`` copies included), every tied weight, ``nn.Embedding``, norms, biases,
  1-D and scalar parameters, heads outside the backbone (``base_model_prefix``: ``score``,
  ``classifier``, value heads), MoE routers, other 2-D parameters that are not a Linear/Conv1D weight
  (Mamba ``A_log``, position tables, expert biases), LoRA factors under the default policy.
* Muon: 2-D weights of ``nn.Linear`` and GPT-2 ``Conv1D`` (stored ``(in, out)``: ``transposed``)
  inside the backbone; 3-D fused MoE expert stacks ``(E, out, in)`` (or transposed) when
  ``moe_experts="muon"``; convolution weights (flattened to ``(out, in·k·k)``) when ``conv="muon"``.
* ``include`` / ``exclude`` regexes on parameter names override the above (exclude wins).
* ``split_fused=True`` (opt-in): fused projections (QKV, gate_up; see :mod:`hf_muon.fused`) are
  orthogonalized and scaled block by block, with the blocks derived from the model config.

:func:`param_groups` turns the routes into optimizer groups (AdamW groups first, so the Trainer's
logged ``learning_rate`` — group 0 — is the AdamW lr), with HF's weight-decay convention: no decay on
biases and norms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .fused import Split, detect
from .layers import layer_info
from .ns_schedule import resolve_steps

LORA_POLICIES = ("adamw", "b_only", "both")
MOE_POLICIES = ("adamw", "muon")
CONV_POLICIES = ("adamw", "muon")


@dataclass
class Route:
    name: str
    param: torch.Tensor
    route: str  # "muon" | "adamw" | "frozen"
    reason: str
    decay: bool = True
    transposed: bool = False
    experts: bool = False
    split: Split | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.param.shape)


def _conv1d_types() -> tuple[type, ...]:
    try:
        from transformers.pytorch_utils import Conv1D

        return (Conv1D,)
    except Exception:  # pragma: no cover - transformers is a dependency
        return ()


def _lora_roles(model: nn.Module) -> dict[int, str]:
    """id(param) -> 'lora_A' | 'lora_B' | 'lora_embedding_A' | ... for PEFT adapter parameters."""
    roles: dict[int, str] = {}
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


def _is_router(mod_name: str, mod: nn.Module, n_experts: int | None) -> bool:
    cls = type(mod).__name__.lower()
    if "router" in cls or cls.endswith("gate"):
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
    lora_policy: str = "adamw",
    moe_experts: str = "adamw",
    conv: str = "adamw",
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    split_fused: bool = False,
) -> list[Route]:
    """Decide a route for every parameter of ``model`` (frozen ones reported as ``"frozen"``)."""
    for val, valid, what in (
        (lora_policy, LORA_POLICIES, "lora_policy"),
        (moe_experts, MOE_POLICIES, "moe_experts"),
        (conv, CONV_POLICIES, "conv"),
    ):
        if val not in valid:
            raise ValueError(f"unknown {what}={val!r}; valid: {', '.join(valid)}")
    flat = _flat_param_error(model)
    if flat:
        from .optimizer import _FLAT_PARAM_HINT

        raise ValueError(f"cannot route {flat}. {_FLAT_PARAM_HINT}")

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
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
    for tgt, src in (getattr(base, "all_tied_weights_keys", None) or {}).items():
        for n in (tgt, src):
            try:
                embeddings.setdefault(id(base.get_parameter(n)), "tied weight")
            except (AttributeError, KeyError):
                pass
    core = getattr(base, getattr(base, "base_model_prefix", "") or "", None)
    core_ids = {id(p) for p in core.parameters()} if isinstance(core, nn.Module) and core is not base else None
    lora = _lora_roles(model)
    n_experts = _num_experts(getattr(base, "config", None))
    conv1d = _conv1d_types()
    inc, exc = _compile(include), _compile(exclude)

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
                r.route, r.reason = "frozen", "requires_grad=False (not optimized)"
            elif any(x.search(name) for x in exc):
                r.reason = "excluded by pattern"
            elif any(x.search(name) for x in inc):
                if p.ndim < 2:
                    raise ValueError(f"include pattern matched {name!r} of shape {tuple(p.shape)}: Muon needs ≥2-D weights")
                r.route, r.reason = "muon", "included by pattern"
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
                    r.route, r.reason = "muon", f"LoRA {role} (policy {lora_policy})"
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
            elif _is_router(mod_name, mod, n_experts):
                r.reason = "MoE router"
            elif _is_experts(mod, p):
                if moe_experts == "muon" and "bias" not in pname:
                    r.route, r.experts = "muon", True
                    r.transposed = bool(getattr(mod, "is_transposed", False))
                    r.reason = "MoE experts, per expert" + (" (transposed)" if r.transposed else "")
                else:
                    r.reason = "MoE experts (moe_experts='adamw')"
            elif pname == "weight" and p.ndim == 2 and isinstance(mod, nn.Linear):
                r.route, r.reason = "muon", "nn.Linear weight"
            elif pname == "weight" and p.ndim == 2 and conv1d and isinstance(mod, conv1d):
                r.route, r.reason, r.transposed = "muon", "Conv1D weight (in, out)", True
            elif pname == "weight" and p.ndim >= 3 and isinstance(mod, nn.modules.conv._ConvNd):
                if conv == "muon":
                    r.route, r.reason = "muon", "conv weight, flattened to (out, in·k)"
                else:
                    r.reason = "conv weight (conv='adamw')"
            else:
                r.reason = f"{p.ndim}-D parameter that is not a Linear/Conv1D weight"
            if split_fused and r.route == "muon":
                r.split, note = detect(name, mod, p, getattr(base, "config", None), transposed=r.transposed,
                                       experts=r.experts)
                if r.split is not None:
                    r.reason += f"; split {r.split.describe()}"
                elif note:
                    r.reason += f"; {note}"
            routes.append(r)
    return routes


def param_groups(
    model: nn.Module,
    *,
    lr: float | None = None,
    adamw_lr: float | None = None,
    weight_decay: float | None = None,
    lora_policy: str = "adamw",
    moe_experts: str = "adamw",
    conv: str = "adamw",
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    split_fused: bool = False,
    require_muon: bool = True,
    **muon_options,
) -> list[dict]:
    """Optimizer param groups for :class:`hf_muon.Muon` from a model's routes.

    ``lr`` sets the Muon groups' lr, ``adamw_lr`` the AdamW groups' (both default to the optimizer's
    ``lr``). ``weight_decay`` applies to decayed groups (biases and norms get 0). Extra keyword
    arguments (``scale_mode=…``) are stored on the Muon groups; ``ns_steps`` may be a schedule
    (``"last2:10"``, ``DepthSchedule``, ``{regex: steps}``, ``"auto"``; see :mod:`hf_muon.ns_schedule`),
    resolved per parameter here, with Muon groups split by step count. ``split_fused=True`` orthogonalizes
    fused QKV / gate_up weights block by block (:mod:`hf_muon.fused`; groups carry the block spec). Raises
    when no parameter is routed to Muon unless ``require_muon=False``.
    """
    routes = route(model, lora_policy=lora_policy, moe_experts=moe_experts, conv=conv, include=include, exclude=exclude,
                   split_fused=split_fused)
    steps_spec = muon_options.pop("ns_steps", None)
    n_layers = _num_layers(model, routes)
    buckets: dict[tuple, dict] = {}
    for r in routes:
        if r.route == "frozen":
            continue
        muon = r.route == "muon"
        steps = None
        if muon and steps_spec is not None:
            steps = resolve_steps(steps_spec, r.name, layer_info(r.name)[0], n_layers)
        key = (muon, r.decay, r.transposed, r.experts, steps, r.split)
        g = buckets.get(key)
        if g is None:
            g = {"params": [], "param_names": [], "use_muon": muon}
            if muon:
                g.update(transposed=r.transposed, experts=r.experts, **muon_options)
                if r.split is not None:
                    g["split"] = r.split.spec()
                if steps is not None:
                    g["ns_steps"] = steps
                if lr is not None:
                    g["lr"] = lr
            elif adamw_lr is not None:
                g["lr"] = adamw_lr
            if not r.decay:
                g["weight_decay"] = 0.0
            elif weight_decay is not None:
                g["weight_decay"] = weight_decay
            buckets[key] = g
        g["params"].append(r.param)
        g["param_names"].append(r.name)
    if require_muon and not any(k[0] for k in buckets):
        raise ValueError(
            "Muon was requested but no parameter was routed to it.\n" + routing_report(routes)
            + "\nMuon takes 2-D nn.Linear/Conv1D weights inside the backbone; use include=[regex] to force others."
        )
    # AdamW groups first (Trainer logs group 0's lr), then Muon; deterministic order for checkpoints.
    return [buckets[k] for k in sorted(buckets, key=lambda k: (k[0], not k[1], k[2], k[3], str(k[4]), str(k[5])))]


def _num_layers(model: nn.Module, routes: list[Route]) -> int | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n = getattr(getattr(base, "config", None), "num_hidden_layers", None)
    if isinstance(n, int):
        return n
    depths = [d for d in (layer_info(r.name)[0] for r in routes) if d is not None]
    return max(depths) + 1 if depths else None


def routing_report(model_or_routes, **route_kwargs) -> str:
    """A table of name, shape, route and reason, followed by counts per route."""
    routes = model_or_routes if isinstance(model_or_routes, list) else route(model_or_routes, **route_kwargs)
    w = max([len(r.name) for r in routes] + [4])
    lines = [f"{'name':<{w}}  {'shape':<18} {'route':<6} reason", "-" * (w + 45)]
    for r in routes:
        lines.append(f"{r.name:<{w}}  {str(r.shape):<18} {r.route:<6} {r.reason}")
    lines.append("-" * (w + 45))
    for kind in ("muon", "adamw", "frozen"):
        sel = [r for r in routes if r.route == kind]
        lines.append(f"{kind:<6} {len(sel):>5} tensors {sum(r.param.numel() for r in sel):>13,} params")
    return "\n".join(lines)
