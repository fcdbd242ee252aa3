"""What routing reads from a model before any per-parameter rule: layer types that exist only when their library
was imported (GPT-2 ``Conv1D``, PEFT adapters), embeddings and the weights tied to them, MoE routers and expert
stacks, norms, and the parameter kinds routing refuses (FSDP v1 ``FlatParameter``, DeepSpeed ZeRO partitions).
Nothing here imports ``peft`` or ``transformers``."""

from __future__ import annotations

import sys

import torch
from torch import nn


def conv1d_types() -> tuple[type, ...]:
    if "transformers" not in sys.modules:  # GPT-2's Conv1D cannot exist unless transformers was imported
        return ()
    try:
        from transformers.pytorch_utils import Conv1D

        return (Conv1D,)
    except Exception:  # pragma: no cover - transformers is a dependency
        return ()


def lora_roles(model: nn.Module) -> dict[int, str]:
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


def flat_param_error(model: nn.Module) -> str | None:
    for name, p in model.named_parameters():
        # torch's FlatParameter reports type name "Parameter" (metaclass); it carries `_is_flat_param`.
        if getattr(p, "_is_flat_param", False) or type(p).__name__ == "FlatParameter" or "_flat_param" in name:
            return f"{name!r} is an FSDP v1 FlatParameter"
        if hasattr(p, "ds_id") or hasattr(p, "ds_numel"):
            return f"{name!r} is a DeepSpeed ZeRO partitioned parameter"
    return None


def is_norm(mod: nn.Module) -> bool:
    return (
        isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.BatchNorm1d, nn.BatchNorm2d))
        or "norm" in type(mod).__name__.lower()
    )


def num_experts(config) -> int | None:
    for key in ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _is_router_class(mod: nn.Module) -> bool:
    cls = type(mod).__name__.lower()
    return "router" in cls or "gating" in cls or cls.endswith("gate")


def router_prefixes(model: nn.Module) -> tuple[str, ...]:
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


def is_router(mod_name: str, mod: nn.Module, n_experts: int | None, routers: tuple[str, ...] = ()) -> bool:
    if _is_router_class(mod) or (routers and f"{mod_name}.".startswith(routers)):
        return True
    last = mod_name.rsplit(".", 1)[-1]
    return (
        isinstance(mod, nn.Linear)
        and n_experts is not None
        and mod.out_features == n_experts
        and last in ("gate", "router", "gating", "wg")
    )


def is_experts(mod: nn.Module, p: torch.Tensor) -> bool:
    return p.ndim == 3 and (hasattr(mod, "is_transposed") or "expert" in type(mod).__name__.lower())


def embedding_reasons(model: nn.Module, base: nn.Module) -> dict[int, str]:
    """id(param) -> reason, for the input/output embeddings and every weight tied to one."""
    embeddings: dict[int, str] = {}
    for getter, label in (
        ("get_input_embeddings", "input embedding"),
        ("get_output_embeddings", "output embedding"),
    ):
        try:
            mod = getattr(model, getter)()
        except (AttributeError, NotImplementedError):
            mod = None
        for p in mod.parameters() if isinstance(mod, nn.Module) else ():
            if p.ndim >= 2:
                prev = embeddings.get(id(p))
                embeddings[id(p)] = label if prev in (None, label) else "input and output embedding (tied)"
    owners = _owners(model)
    # tied to an embedding: AdamW whichever module registered it first; weights shared across depth between hidden
    # layers (zamba's shared block) are hidden matrices
    for pid, users in owners.items():
        if len(users) > 1 and any(isinstance(u, nn.Embedding) for u in users):
            embeddings.setdefault(pid, "tied to an embedding")
    for tgt, src in (getattr(base, "all_tied_weights_keys", None) or {}).items():
        try:
            ids = [id(base.get_parameter(n)) for n in (tgt, src)]
        except (AttributeError, KeyError):
            continue
        if any(i in embeddings for i in ids) or any(
            isinstance(u, nn.Embedding) for i in ids for u in owners.get(i, ())
        ):
            for i in ids:
                embeddings.setdefault(i, "tied weight")
    return embeddings
