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

Registration is idempotent, never overwrites a handler someone else registered for ``"muon"`` unless
``force=True``, and leaves every other optimizer untouched.
"""

from __future__ import annotations

import enum
import functools
import logging

from ..config import MuonConfig
from ..factory import create_optimizer
from ..model.routing import route
from ..optim.backends import check_launch
from ..optim.muon import Muon
from .announce import announce
from .optim_args import config_from_training_args

logger = logging.getLogger("hf_muon")

OPTIM_NAME = "muon"


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
    return member


def register(force: bool = False) -> None:
    """Make ``optim="muon"`` / ``--optim muon`` valid for transformers and TRL (idempotent)."""
    register_name()
    register_handler(force)


def register_name():
    """Add ``OptimizerNames.MUON`` (enough for argparse choices and ``TrainingArguments``) and validate
    ``--optim muon`` runs when their ``TrainingArguments`` are built."""
    from transformers.training_args import OptimizerNames, TrainingArguments

    member = _extend_enum(OptimizerNames, "MUON", OPTIM_NAME)
    _validate_on_post_init(TrainingArguments)
    return member


def validate_args(args) -> None:
    """For ``optim="muon"``: refuse DeepSpeed / FSDP v1 and parse ``optim_args`` (bad keys or values raise,
    naming the key and the valid ones), before any data or model work."""
    if getattr(args, "optim", None) == OPTIM_NAME:
        check_backend(args)
        config_from_training_args(args)


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
    """Add the ``"muon"`` entry to the Trainer's handler table (the same dict object Trainer reads)."""
    from transformers import trainer_optimizer

    member = register_name()
    handlers = trainer_optimizer._OPTIMIZER_HANDLERS
    if force or member not in handlers:
        handlers[member] = muon_handler


def is_registered() -> bool:
    import sys

    to = sys.modules.get("transformers.trainer_optimizer")
    return bool(to) and OPTIM_NAME in {getattr(k, "value", k) for k in to._OPTIMIZER_HANDLERS}


def check_backend(args) -> None:
    """Refuse backends that hand the optimizer flattened 1-D parameters, before any work is done."""
    if getattr(args, "deepspeed", None) or getattr(args, "deepspeed_plugin", None):
        raise ValueError(
            "--optim muon cannot run as a DeepSpeed client optimizer: ZeRO replaces the 2-D weights with flat 1-D "
            "partitions, so Muon would silently degrade. Remove --optim muon and put DeepSpeed's own Muon in the "
            'DeepSpeed config: "optimizer": {"type": "Muon", "params": {"lr": "auto", "weight_decay": "auto", '
            '"betas": "auto", "eps": "auto"}}. Or use FSDP2 (fsdp_version: 2) with --optim muon.'
        )
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


def build_optimizer(model, args, optim_args: MuonConfig | dict | str | None = None, **overrides) -> Muon:
    """A routed :class:`Muon` for ``model`` from ``TrainingArguments`` (+ ``optim_args``).

    ``args.learning_rate`` is the AdamW lr and (unless ``muon_lr``/``muon_lr_ratio``) the Muon lr,
    which the default moonlight scale mode makes equivalent; weight decay, betas and eps come from
    ``args`` too.
    """
    check_backend(args)
    config = config_from_training_args(args, optim_args)
    if overrides:
        config = config.replace(**overrides)
    check_launch(getattr(args, "world_size", 1), config.distributed)  # torchrun without DDP: stop with the fix
    opt = create_optimizer(model, config)
    announce(route(model, **config.routing_kwargs()), getattr(args, "output_dir", None),
             main_process=getattr(args, "process_index", 0) == 0)
    return opt


class MuonFactory:
    """Trainer factory-path callable: ``MuonFactory()(model, args=..., optim_args=...)`` → :class:`Muon`."""

    def __call__(self, model, *, args, optim_args=None, **overrides) -> Muon:
        return build_optimizer(model, args, optim_args, **overrides)


def muon_handler(ctx):
    """``_OPTIMIZER_HANDLERS`` entry: validate early, return the factory and its kwargs."""
    check_backend(ctx.args)
    config = config_from_training_args(ctx.args, ctx.optim_args)  # parsed once; bad keys/values fail here
    return MuonFactory, {"args": ctx.args, "optim_args": config}
