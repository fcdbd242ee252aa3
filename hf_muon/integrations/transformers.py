"""transformers adapter: ``--optim muon``, the optimizer factory, and ``MuonTrainer``.

How ``--optim muon`` reaches hf_muon (transformers 5.24):

1. ``TrainingArguments.optim`` is converted with ``OptimizerNames(value)`` in ``__post_init__``, and
   ``HfArgumentParser`` freezes ``choices=[m.value for m in OptimizerNames]`` when the parser is
   *built*. :func:`register` therefore adds a ``MUON = "muon"`` member to ``OptimizerNames`` (argparse
   choices, ``--help``, YAML/JSON/dict configs and pickled ``training_args.bin`` then all work).
2. ``Trainer.get_optimizer_cls_and_kwargs`` looks ``args.optim`` up in the module-level dict
   ``trainer_optimizer._OPTIMIZER_HANDLERS``; :func:`register` adds our handler to that same dict.
3. The handler returns :class:`MuonFactory` (not an ``Optimizer`` subclass), so the Trainer takes its
   factory path, ``MuonFactory()(model, **kwargs)``, which routes the model itself (the Trainer's default
   decay/no-decay groups are not used on that path; :func:`hf_muon.param_groups` rebuilds them).

Names: ``--optim hf_muon`` always selects hf_muon. ``--optim muon`` selects hf_muon while transformers has no
``muon`` of its own; if a transformers release ships one, ``muon`` stays transformers' (never overridden, never
broken) and the run says at start-up which optimizer ``muon`` runs and that ``hf_muon`` picks the other.
Registration is idempotent and leaves every other optimizer untouched (``force=True`` claims ``muon`` anyway).
"""

from __future__ import annotations

import enum
import functools
import logging

from ..config import OPTIM_ARGS, MuonConfig
from ..factory import create_optimizer
from ..model.routing import route
from ..optim.backends import check_launch
from ..optim.muon import Muon
from .announce import announce, run_layout
from .optim_args import config_from_training_args

logger = logging.getLogger("hf_muon")

OPTIM_NAME = "muon"
HF_NAME = "hf_muon"  # never collides: always hf_muon's optimizer
_OURS: set[str] = set()  # the names whose enum member hf_muon added


def _extend_enum(enum_cls, name: str, value: str):
    """Add member ``name = value`` to a (str) Enum in place; return the member (existing one if present)."""
    if value in enum_cls._value2member_map_:
        return enum_cls(value)
    member = str.__new__(enum_cls, value)
    member._name_ = name
    member._value_ = value
    member.__objclass__ = enum_cls
    if hasattr(enum.EnumType, "_add_member_") and hasattr(enum_cls, "_add_member_"):  # Python ≥ 3.13
        enum_cls._add_member_(name, member)
    else:
        enum_cls._member_map_[name] = member
        type.__setattr__(enum_cls, name, member)
    if name not in enum_cls._member_names_:
        enum_cls._member_names_.append(name)
    enum_cls._value2member_map_[value] = member
    _OURS.add(value)
    return member


def register(force: bool = False) -> None:
    """Make ``--optim hf_muon`` (and ``muon`` where free) valid for transformers and TRL (idempotent)."""
    register_name()
    register_handler(force)


def register_name():
    """Add ``OptimizerNames.HF_MUON`` and, unless transformers has its own, ``OptimizerNames.MUON`` (argparse
    choices and ``TrainingArguments`` need them); validate hf_muon runs when their ``TrainingArguments`` are built."""
    from transformers.training_args import OptimizerNames, TrainingArguments

    _extend_enum(OptimizerNames, "HF_MUON", HF_NAME)
    member = _extend_enum(OptimizerNames, "MUON", OPTIM_NAME)
    _validate_on_post_init(TrainingArguments)
    return member


def native_muon() -> bool:
    """True when transformers itself defines the ``muon`` optimizer name (then ``muon`` is transformers')."""
    import sys

    to = sys.modules.get("transformers.trainer_optimizer")
    handler = to._OPTIMIZER_HANDLERS.get(OPTIM_NAME) if to is not None else None
    return OPTIM_NAME not in _OURS or (handler is not None and handler is not muon_handler)


def selects_hf_muon(optim) -> bool:
    """Whether ``args.optim`` runs hf_muon's optimizer."""
    if optim == HF_NAME:
        return True
    return optim == OPTIM_NAME and not native_muon()


def startup_note(optim) -> str | None:
    """What ``--optim muon`` runs, said once at start-up when it is not obvious; None otherwise."""
    if optim == OPTIM_NAME and native_muon():
        return (
            "hf_muon: --optim muon runs transformers' own Muon (transformers defines OptimizerNames.MUON); "
            "hf_muon's optimizer is --optim hf_muon (same --optim_args)."
        )
    return None


def explicit_knobs(optim_args) -> set[str]:
    """The MuonConfig fields a user set in ``optim_args`` (a dict, ``"k=v,..."`` or a MuonConfig)."""
    if isinstance(optim_args, MuonConfig):
        default = MuonConfig()
        return {k for k, v in optim_args.to_dict().items() if v != getattr(default, k)} - {
            "lr",
            "weight_decay",
            "betas",
            "eps",
        }
    if isinstance(optim_args, dict):
        keys = optim_args
    else:
        keys = [i.split("=", 1)[0] for i in str(optim_args or "").replace(" ", "").split(",") if i]
    return {OPTIM_ARGS.get(k, k) for k in keys}


def validate_args(args) -> None:
    """For an hf_muon run: check the backend (DeepSpeed config, FSDP v1) and parse ``optim_args`` (bad keys or
    values raise, naming the key and the valid ones), before any data or model work."""
    optim = getattr(args, "optim", None)
    note = startup_note(optim)
    if note:
        logger.warning(note)
    if selects_hf_muon(optim):
        config = config_from_training_args(args)
        check_backend(args, config)


def _validate_on_post_init(cls) -> None:
    original = cls.__post_init__
    if getattr(original, "_hf_muon_validates", False):
        return

    @functools.wraps(original)
    def __post_init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        validate_args(self)

    __post_init__._hf_muon_validates = True
    cls.__post_init__ = __post_init__


def register_handler(force: bool = False) -> None:
    """Add ``hf_muon`` (always) and ``muon`` (unless transformers has its own) to the Trainer's handler table."""
    from transformers import trainer_optimizer
    from transformers.training_args import OptimizerNames

    register_name()
    handlers = trainer_optimizer._OPTIMIZER_HANDLERS
    handlers[OptimizerNames(HF_NAME)] = muon_handler
    muon = OptimizerNames(OPTIM_NAME)
    if force:
        handlers[muon] = muon_handler
        _OURS.add(OPTIM_NAME)
    elif muon not in handlers and OPTIM_NAME in _OURS:
        handlers[muon] = muon_handler


def uses_deepspeed(args) -> bool:
    return bool(getattr(args, "deepspeed", None) or getattr(args, "deepspeed_plugin", None))


def deepspeed_active() -> bool:
    """Whether the run's accelerate state has DeepSpeed on (the Trainer's own test); True before any state."""
    from .announce import _accelerate_state

    state = _accelerate_state()
    return state is None or getattr(state, "deepspeed_plugin", None) is not None


def check_backend(args, config: MuonConfig | None = None) -> None:
    """Validate the launch before any work: DeepSpeed through its own Muon (config checked, ZeRO-3 completed),
    FSDP v1 refused (flattened 1-D parameters)."""
    if uses_deepspeed(args):
        from . import deepspeed as ds

        ds.require()
        cfg = ds.ds_config(args)
        if cfg is None:
            raise ValueError(
                "--optim muon with DeepSpeed: hf_muon could not read the DeepSpeed config from the "
                "TrainingArguments (args.deepspeed / args.deepspeed_plugin)"
            )
        config = config if config is not None else config_from_training_args(args)
        explicit = explicit_knobs(getattr(args, "optim_args", None))
        ds.check_config(cfg, config, explicit)
        if cfg.get("optimizer") is not None:
            ds.expect_explicit(config)
        return
    fsdp = getattr(args, "fsdp", None)
    if fsdp:
        cfg = getattr(args, "fsdp_config", None) or {}
        version = int(cfg.get("version", cfg.get("fsdp_version", 2)) or 2)  # transformers 5 defaults to FSDP2
        if version < 2:
            raise ValueError(
                "--optim muon does not work with FSDP v1: it hands the optimizer flattened 1-D FlatParameters, so "
                "no whole weight matrix exists to orthogonalize. Use FSDP2: --fsdp_config with fsdp_version: 2 "
                "(accelerate: fsdp_version: 2)."
            )


def build_optimizer(model, args, optim_args: MuonConfig | dict | str | None = None, **overrides):
    """A routed optimizer for ``model`` from ``TrainingArguments`` (+ ``optim_args``): :class:`Muon`, or under
    DeepSpeed DeepSpeed's own Muon over hf_muon's routing (:mod:`hf_muon.integrations.deepspeed`).

    ``args.learning_rate`` is the AdamW lr and (unless ``muon_lr``/``muon_lr_ratio``) the Muon lr,
    which the default moonlight scale mode makes equivalent; weight decay, betas and eps come from
    ``args`` too.
    """
    config = config_from_training_args(args, optim_args)
    if overrides:
        config = config.replace(**overrides)
    main = getattr(args, "process_index", 0) == 0
    layout = run_layout(args) if not (uses_deepspeed(args) and deepspeed_active()) else None
    if uses_deepspeed(args) and not deepspeed_active():
        layout += " (DeepSpeed requested, not applied)"
        if main:
            logger.warning(
                f"hf_muon: DeepSpeed was requested (--deepspeed / an accelerate DeepSpeed config), but accelerate did not "
                f"enable it for this run (on CPU it does so only for `--deepspeed` under torchrun): this run is {layout}, "
                "so it trains with hf_muon's own Muon, not through DeepSpeed."
            )
    elif uses_deepspeed(args):
        from . import deepspeed as ds

        explicit = explicit_knobs(optim_args if optim_args is not None else getattr(args, "optim_args", None))
        label = ds.check_config(ds.ds_config(args), config, explicit | set(overrides))
        opt, routes = ds.build(model, config)
        with ds.layer_shapes(model):  # ZeRO-3 (zero.Init): report layer shapes, not partitions
            announce(routes, getattr(args, "output_dir", None), main_process=main, layout=label)
        return opt
    check_backend(args, config)
    check_launch(getattr(args, "world_size", 1), config.distributed)  # torchrun without DDP: stop with the fix
    routes = route(model, config)  # once: the optimizer's groups and the announced table are the same routes
    opt = create_optimizer(model, config, routes=routes)
    announce(routes, getattr(args, "output_dir", None), main_process=main, layout=layout)
    return opt


class MuonFactory:
    """Trainer factory-path callable: ``MuonFactory()(model, args=..., optim_args=...)`` → :class:`Muon`."""

    def __call__(self, model, *, args, optim_args=None, **overrides) -> Muon:
        return build_optimizer(model, args, optim_args, **overrides)


def muon_handler(ctx):
    """``_OPTIMIZER_HANDLERS`` entry: validate early, return the factory and its kwargs (the raw ``optim_args``
    stay with the factory so the DeepSpeed path can tell set knobs from defaults)."""
    config = config_from_training_args(ctx.args, ctx.optim_args)  # parsed once; bad keys/values fail here
    check_backend(ctx.args, config)
    return MuonFactory, {"args": ctx.args, "optim_args": ctx.optim_args or {}}
