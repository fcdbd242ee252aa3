"""``param_groups``: a model's routes as optimizer param groups for :class:`hf_muon.Muon`.

AdamW groups come first (the Trainer logs group 0's lr as ``learning_rate``, so that is the AdamW lr), then
Muon groups; HF's weight-decay convention holds (no decay on biases and norms). Parameters that share every
group-level fact (kind, decay, orientation, expert stack, block split, NS step count) share a group, in a
deterministic order so checkpoints line up. A per-layer ``ns_steps`` schedule (``"last2:10"``,
:class:`~hf_muon.ns.schedule.DepthSchedule`, ``{regex: steps}``) is resolved here, per parameter, to an int
or ``"auto"``.
"""

from __future__ import annotations

from torch import nn

from ..config import KNOBS, MuonConfig, check
from ..ns.schedule import resolve_steps
from .layers import layer_info
from .routing import Route, route, routing_report


def _num_layers(model: nn.Module, routes: list[Route]) -> int | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n = getattr(getattr(base, "config", None), "num_hidden_layers", None)
    if isinstance(n, int):
        return n
    depths = [d for d in (layer_info(r.name)[0] for r in routes) if d is not None]
    return max(depths) + 1 if depths else None


def param_groups(
    model: nn.Module,
    config: MuonConfig | None = None,
    *,
    lr: float | None = None,
    adamw_lr: float | None = None,
    weight_decay: float | None = None,
    require_muon: bool = True,
    routes: list[Route] | None = None,
    **knobs,
) -> list[dict]:
    """Optimizer param groups for :class:`hf_muon.Muon` from a model's routes.

    Routing knobs (``lora_policy``, ``moe_experts``, ``conv``, ``include``, ``exclude``, ``split_fused``) come
    from ``config`` or keyword arguments; other :class:`~hf_muon.MuonConfig` knobs given as keyword arguments
    (``scale_mode=…``) are stored on the Muon groups, and ``ns_steps`` may be a per-layer schedule.
    ``lr`` / ``adamw_lr`` set the Muon / AdamW groups' lr, ``weight_decay`` the decayed groups' decay (biases
    and norms get 0). ``routes``: the model's routes when the caller already has them (``route(model, config)``;
    the model is then not routed again, and routing knobs cannot be given here). Raises when nothing is routed to
    Muon unless ``require_muon=False``.
    """
    for k, v in knobs.items():
        knobs[k] = check(k, v, "param_groups: ")
    cfg = config or MuonConfig()
    routing = {k: knobs.pop(k) for k in cfg.routing_kwargs() if k in knobs}
    if routes is not None and routing:
        raise ValueError(
            f"param_groups: {sorted(routing)[0]} is a routing knob and routes= are given; pass it to "
            "route(model, ...) instead"
        )
    group_knobs = {k: v for k, v in knobs.items() if KNOBS[k].metadata["scope"] == "group"}
    if set(knobs) - set(group_knobs):
        raise ValueError(
            f"param_groups: {sorted(set(knobs) - set(group_knobs))[0]} is an optimizer-wide knob; "
            "pass it to hf_muon.Muon / create_optimizer"
        )
    steps_spec = group_knobs.pop("ns_steps", cfg.ns_steps if config is not None else None)
    if isinstance(steps_spec, int) and config is not None and "ns_steps" not in knobs:
        steps_spec = None  # the optimizer's default applies; nothing to store per group
    if routes is None:
        routes = route(model, cfg, **routing)
    n_layers = _num_layers(model, routes)
    buckets: dict[tuple, dict] = {}
    for r in routes:
        if r.kind == "frozen":
            continue
        muon = r.kind == "muon"
        steps = (
            resolve_steps(steps_spec, r.name, layer_info(r.name)[0], n_layers)
            if muon and steps_spec is not None
            else None
        )
        key = (muon, r.decay, r.transposed, r.experts, steps, r.split)
        g = buckets.get(key)
        if g is None:
            g = {"params": [], "param_names": [], "use_muon": muon}
            if muon:
                g.update(transposed=r.transposed, experts=r.experts, **group_knobs)
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
        lora = any(r.kind == "adamw" and r.reason.startswith("LoRA lora_") for r in routes)
        fix = (
            "\nOnly LoRA factors are trainable and lora_policy='adamw' keeps them on AdamW: pass --optim_args "
            "lora_policy=both (the default: both factors on Muon) or lora_policy=b_only (lora_B on Muon) "
            "(hf_muon.param_groups(model, lora_policy='both'))."
            if lora
            else "\nMuon takes 2-D nn.Linear/Conv1D weights inside the backbone; use include=[regex] to force others."
        )
        raise ValueError("Muon was requested but no parameter was routed to it.\n" + routing_report(routes) + fix)
    return [buckets[k] for k in sorted(buckets, key=lambda k: (k[0], not k[1], k[2], k[3], str(k[4]), str(k[5])))]


__all__ = ["param_groups"]
