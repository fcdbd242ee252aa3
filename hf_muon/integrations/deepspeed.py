"""DeepSpeed adapter: ``--optim muon`` under ZeRO-1/2/3 through DeepSpeed's own Muon, with hf_muon's routing.

ZeRO hands an optimizer flat 1-D partitions, so hf_muon's :class:`~hf_muon.Muon` cannot run there; DeepSpeed's
``MuonWithAuxAdam`` orthogonalizes inside ZeRO's partitioning instead. This module only translates and delegates:

* **Routing** is hf_muon's (:func:`hf_muon.route`, by identity: tied weights, heads, experts, LoRA policy). Every
  parameter gets the ``use_muon`` attribute DeepSpeed reads, and the optimizer is DeepSpeed's ``MuonWithAuxAdam``
  over hf_muon's groups (a DeepSpeed config without an ``optimizer`` section). ZeRO-3 parameters created under
  ``zero.Init`` (HF's ZeRO-3 loading) are routed at their layer shape (``ds_shape``), never as 1-D.
* **Update scale**: DeepSpeed's Muon writes ``W ← W·(1 − lr·λ) − lr·√max(1, rows/cols)·O``. Each Muon group's lr is
  hf_muon's Muon lr × ``scale_factor(scale_mode)`` / DeepSpeed's factor, and its decay is divided by the same ratio,
  so one ``--learning_rate`` gives the update RMS and the decay hf_muon gives (moonlight: ratio = 0.2·√fan_in).
* **Knobs** DeepSpeed's Muon cannot honour are refused when set, naming the knob (:data:`KNOB_MAP`).
* **Clipping**: ZeRO writes Muon's update into the gradient buffers before clipping, so ``gradient_clipping`` would
  clip the orthogonalized update itself; it is set to 0 with a warning (the AdamW half then runs unclipped).
* **Checks**: ZeRO stage 0 is refused (no partitioned step; older DeepSpeed degrades Muon to SGD there), ZeRO-3
  gets ``reduce_scatter: false`` (DeepSpeed's Muon needs whole gradients), and right after ``deepspeed.initialize``
  the parameters DeepSpeed's optimizer holds in Muon groups are compared with hf_muon's routing; any difference
  stops the run. An explicit ``optimizer`` section stays the user's and gets the same check.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math

import torch

from ..config import MuonConfig
from ..model.routing import route
from ..model.scaling import fan_out_in, scale_factor

logger = logging.getLogger("hf_muon")

EXTRA = 'pip install "hf_muon[deepspeed]"'

# knob -> values DeepSpeed's Muon can honour (None: any value; routing knobs act through hf_muon's routing)
KNOB_MAP: dict[str, tuple | None] = {
    "momentum": None,
    "muon_lr": None,
    "muon_lr_ratio": None,
    "adamw_lr": None,
    "scale_mode": None,
    "lora_policy": None,
    "moe_experts": None,
    "include": None,
    "exclude": None,
    "momentum_dtype": None,
    "batched": None,
    "kernels": None,
    "fused": None,
    "replica_check": None,
    "ns_method": ("auto", "gram", "newton_schulz"),
    "coefficients": ("keller",),
    "ns_steps": (5,),
    "nesterov": (True,),
    "distributed": ("auto",),
    "conv": ("adamw",),
    "split_fused": (False,),
    "per_head": (False,),
    "qk_clip": (0.0,),
    "nonfinite": ("error",),
    "variant": ("muon",),
    "update_base": ("momentum",),
    "spectral_power": (0.0,),
    "cautious_wd": (False,),
}
NS_METHOD = {"auto": "gram", "gram": "gram", "newton_schulz": "standard"}


def require():
    try:
        import deepspeed
    except ImportError as e:
        raise ImportError(f"--optim muon with --deepspeed needs DeepSpeed: {EXTRA}") from e
    return deepspeed


def ds_config(args) -> dict | None:
    """The DeepSpeed config dict of a Trainer run (``--deepspeed`` or accelerate's DeepSpeed plugin), or None."""
    hf = getattr(args, "hf_deepspeed_config", None)
    if hf is None:
        hf = getattr(getattr(args, "deepspeed_plugin", None), "hf_ds_config", None)
    if hf is not None:
        return hf.config
    raw = getattr(args, "deepspeed", None)
    return raw if isinstance(raw, dict) else None


def stage(config: dict) -> int:
    return int((config.get("zero_optimization") or {}).get("stage", 0) or 0)


def check_knobs(config: MuonConfig, explicit: set[str]) -> None:
    """Refuse each explicitly set knob DeepSpeed's Muon cannot honour (message names the knob)."""
    for name in sorted(explicit):
        allowed = KNOB_MAP.get(name, ())
        if allowed is None:
            continue
        value = getattr(config, name)
        if str(value) not in {str(a) for a in allowed}:
            ok = ", ".join(map(str, allowed)) if allowed else "not available"
            raise ValueError(
                f"optim_args {name}={value} cannot run under DeepSpeed: DeepSpeed's Muon (Keller's quintic, 5 steps, "
                f"Nesterov, NS dtype chosen by DeepSpeed) does not offer it (honoured under DeepSpeed: {ok}). Remove "
                f"{name} from --optim_args, or train without --deepspeed (DDP / FSDP2) to use it. See docs/launchers.md."
            )


def check_config(config: dict, muon: MuonConfig, explicit: set[str]) -> str:
    """Validate (and complete, for ZeRO-3) a DeepSpeed config for ``--optim muon``; return the layout label."""
    zero = config.setdefault("zero_optimization", {})
    s = stage(config)
    if s == 0:
        raise ValueError(
            "--optim muon with DeepSpeed needs ZeRO stage 1, 2 or 3 (the config has zero_optimization.stage "
            f"{zero.get('stage', 'unset (0)')}): DeepSpeed's Muon orthogonalizes inside ZeRO's partitioned step, and "
            'without it older DeepSpeed releases silently train plain SGD. Set "zero_optimization": {"stage": 2} '
            "(hf-muon config deepspeed_zero2 prints a working file), or drop --deepspeed and run DDP."
        )
    if s == 3:
        if zero.get("reduce_scatter") is True:
            raise ValueError(
                "zero_optimization.reduce_scatter is true, but DeepSpeed's Muon under ZeRO-3 needs whole gradients: "
                'set "reduce_scatter": false (or remove the key; hf_muon then sets it).'
            )
        zero["reduce_scatter"] = False
    section = config.get("optimizer")
    clip = config.get("gradient_clipping", 1.0)  # DeepSpeed's default is 1.0
    if isinstance(clip, (int, float)) and clip > 0:
        logger.warning(
            f"hf_muon: gradient_clipping={clip} set to 0 for this DeepSpeed run. ZeRO writes Muon's orthogonalized "
            "update into the gradient buffers before clipping, so the clip would shrink the update itself (by the "
            "clip over the norm of all updates, about √rank per matrix, so more the larger the model; docs/launchers.md). "
            "The AdamW half runs unclipped; pass --max_grad_norm 0 to silence this."
        )
        config["gradient_clipping"] = 0.0
    if section is not None:
        kind = str(section.get("type", "")).lower()
        if kind != "muon":
            raise ValueError(
                f"--optim muon, but the DeepSpeed config's optimizer section is {section.get('type')!r}: DeepSpeed "
                "uses its own section and --optim would be ignored. Remove the optimizer section (hf_muon then "
                'configures DeepSpeed\'s Muon with its routing), or set "type": "Muon", or drop --optim muon.'
            )
        ignored = sorted(set(explicit) - set(muon.routing_kwargs()))
        if ignored:
            raise ValueError(
                f"optim_args {ignored[0]} would have no effect: the DeepSpeed config has its own optimizer section, "
                "whose params DeepSpeed uses. Set it there, or remove the section so hf_muon configures the run."
            )
    elif config.get("scheduler") is not None:
        raise ValueError(
            "the DeepSpeed config has a scheduler section: DeepSpeed's schedulers give every param group one lr, "
            "which would undo hf_muon's per-shape Muon lr (the update-RMS match). Remove the scheduler section; "
            "--lr_scheduler_type / --warmup_steps then apply (Trainer schedulers scale each group's lr)."
        )
    else:
        check_knobs(muon, explicit)
    return f"DeepSpeed ZeRO-{s}"


@contextlib.contextmanager
def layer_shapes(model):
    """Show ZeRO-3 partitioned parameters (``zero.Init``) to routing at their layer shape, without gathering them:
    each ``p.data`` becomes a zero-stride view of ``ds_shape`` and the ZeRO markers are hidden, then restored."""
    saved = []
    try:
        for p in model.parameters():
            shape = getattr(p, "ds_shape", None)
            if shape is None:
                continue
            hidden = {k: p.__dict__.pop(k) for k in ("ds_id", "ds_numel") if k in p.__dict__}
            saved.append((p, p.data, hidden))
            p.data = torch.zeros((), dtype=p.dtype, device=p.data.device).expand(tuple(shape))
        yield
    finally:
        for p, data, hidden in saved:
            p.data = data
            p.__dict__.update(hidden)


def ds_scale(shape) -> float:
    """DeepSpeed Muon's update scale (Keller's ``√max(1, rows/cols)`` over the stored last two dims)."""
    rows, cols = shape[-2], shape[-1]
    return math.sqrt(rows / cols) if rows > cols else 1.0


def plan(model, config: MuonConfig) -> tuple[list, list[dict]]:
    """hf_muon's routes of ``model`` and DeepSpeed ``MuonWithAuxAdam`` param groups that realize them."""
    with layer_shapes(model):
        routes = route(model, config)
        shapes = {id(r.param): tuple(r.param.shape) for r in routes}
    buckets: dict[tuple, dict] = {}
    muon_lr, adamw_lr = config.muon_lr_for(), config.adamw_lr if config.adamw_lr is not None else config.lr
    for r in routes:
        if r.kind == "frozen":
            continue
        shape = shapes[id(r.param)]
        if r.kind == "muon":
            ratio = scale_factor(*fan_out_in(shape, r.transposed, r.experts), config.scale_mode) / ds_scale(shape)
            key = (1, round(ratio, 12))
            group = buckets.setdefault(
                key,
                dict(
                    params=[],
                    use_muon=True,
                    lr=muon_lr * ratio,
                    momentum=config.momentum,
                    weight_decay=config.weight_decay / ratio,
                    ns_method=NS_METHOD[config.ns_method],
                ),
            )
        else:
            key = (0, r.decay)
            group = buckets.setdefault(
                key,
                dict(
                    params=[],
                    use_muon=False,
                    lr=adamw_lr,
                    betas=tuple(config.betas),
                    eps=config.eps,
                    weight_decay=config.weight_decay if r.decay else 0.0,
                ),
            )
        group["params"].append(r.param)
    # AdamW groups first: the Trainer logs group 0's lr, which is then --learning_rate
    return routes, [buckets[k] for k in sorted(buckets)]


def tag(model, routes) -> None:
    """Set DeepSpeed's ``use_muon`` on every parameter (frozen ones included: DeepSpeed checks them all)."""
    muon = {id(r.param) for r in routes if r.kind == "muon"}
    for p in model.parameters():
        p.use_muon = id(p) in muon


def build(model, config: MuonConfig):
    """DeepSpeed's Muon for ``model`` with hf_muon's routing (the client optimizer ``deepspeed.initialize`` gets)."""
    require()
    install_check()
    routes, groups = plan(model, config)
    if not any(g["use_muon"] for g in groups):
        raise ValueError("hf_muon routed no parameter to Muon; see the routing table (hf_muon.routing_report(model))")
    tag(model, routes)
    from deepspeed.runtime.zero.muon.muon_optimizer import MuonWithAuxAdam

    opt = MuonWithAuxAdam(groups)  # DeepSpeed's own class: ZeRO's Muon path and its supported-optimizer list key on it
    opt.hf_muon_routes = _table(routes)  # what verify() compares ZeRO's groups with
    return opt, routes


def _table(routes) -> dict:
    return {
        "muon": {id(r.param) for r in routes if r.kind == "muon"},
        "adamw": {id(r.param) for r in routes if r.kind == "adamw"},
        "names": {id(r.param): r.name for r in routes},
    }


def held(engine) -> dict[str, list] | None:
    """The parameters DeepSpeed's ZeRO optimizer holds, by half: ``{"muon": [...], "adamw": [...]}``."""
    zo = getattr(engine, "optimizer", None)
    out = {"muon": [], "adamw": []}
    if hasattr(zo, "sub_groups_using_muon") and hasattr(zo, "fp16_groups"):  # ZeRO-3
        pairs = zip(zo.fp16_groups, zo.sub_groups_using_muon)
    elif hasattr(zo, "bit16_groups") and hasattr(zo, "_is_muon_group"):  # ZeRO-1/2
        pairs = ((g, bool(g) and zo._is_muon_group(g)) for g in zo.bit16_groups)
    elif hasattr(zo, "fp16_groups") and not getattr(zo, "use_muon", True):  # ZeRO-3 without DeepSpeed's Muon
        pairs = ((g, False) for g in zo.fp16_groups)
    else:
        return None
    for params, is_muon in pairs:
        out["muon" if is_muon else "adamw"].extend(params)
    return out


def verify(engine, table: dict, label: str) -> str:
    """Stop the run unless DeepSpeed's optimizer holds exactly hf_muon's Muon set; return the summary line."""
    got = held(engine)
    if got is None:
        raise RuntimeError(
            f"hf_muon cannot read which parameters {type(engine.optimizer).__name__} holds in Muon "
            "groups; refusing to train unchecked (DeepSpeed's Muon needs ZeRO stage 1-3)."
        )
    muon_ids, adam_ids = {id(p) for p in got["muon"]}, {id(p) for p in got["adamw"]}
    names = table["names"]
    missing = [names.get(i, "?") for i in table["muon"] - muon_ids]
    extra = [names.get(i, "?") for i in muon_ids - table["muon"]]
    if missing or extra:
        raise RuntimeError(
            f"DeepSpeed's optimizer holds {len(muon_ids)} tensors in Muon groups, hf_muon routed {len(table['muon'])} "
            f"to Muon: {len(missing)} of hf_muon's Muon tensors are not on Muon there ({missing[:4]}), {len(extra)} "
            f"are on Muon that hf_muon keeps on AdamW ({extra[:4]}). Stopping before any step. With an explicit "
            "optimizer section, DeepSpeed tags by name: remove the section so hf_muon configures the run."
        )
    n_muon = sum(_numel(p) for p in got["muon"])
    n_all = n_muon + sum(_numel(p) for p in got["adamw"])
    return (
        f"hf_muon: {label} holds {len(muon_ids)} tensors ({n_muon:,} params, {100 * n_muon / max(n_all, 1):.1f} %) "
        f"in DeepSpeed Muon groups and {len(adam_ids)} in AdamW groups = hf_muon's routing"
    )


def _numel(p) -> int:
    return int(getattr(p, "ds_numel", 0) or p.numel())


_PENDING: dict = {}  # an explicit optimizer section: the MuonConfig whose routing DeepSpeed must match


def expect_explicit(config: MuonConfig) -> None:
    install_check()
    _PENDING["config"] = config


def install_check() -> None:
    """Wrap ``deepspeed.initialize`` (which Trainer and accelerate look up at call time) with :func:`verify`."""
    deepspeed = require()
    if getattr(deepspeed.initialize, "_hf_muon_checks", False):
        return
    original = deepspeed.initialize

    @functools.wraps(original)
    def initialize(*args, **kwargs):
        client = kwargs.get("optimizer")
        table = getattr(client, "hf_muon_routes", None)
        config = _PENDING.get("config")
        if table is None and config is not None and kwargs.get("model") is not None:
            with layer_shapes(kwargs["model"]):
                table = _table(route(kwargs["model"], config))
        result = original(*args, **kwargs)
        if table is not None:
            engine = result[0]
            label = f"DeepSpeed ZeRO-{engine.zero_optimization_stage()}"
            line = verify(engine, table, label)
            if engine.global_rank == 0:
                logger.warning(line)
        return result

    initialize._hf_muon_checks = True
    deepspeed.initialize = initialize


__all__ = ["KNOB_MAP", "build", "check_config", "check_knobs", "layer_shapes", "plan", "verify"]
