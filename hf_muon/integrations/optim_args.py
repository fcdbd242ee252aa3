"""``--optim_args`` for ``--optim muon``: parsed once, by :meth:`hf_muon.MuonConfig.from_optim_args`.

transformers hands optimizer handlers ``optim_args`` as ``{key: str}`` after removing every space and
splitting on ``,`` and ``=``, so values cannot contain commas: custom coefficient schedules are written
``a:b:c`` with ``;`` between steps, and include/exclude take one regex each (use ``|`` for alternatives).
Learning rate, weight decay, Adam betas and eps come from ``TrainingArguments``.
"""

from __future__ import annotations

from ..config import MuonConfig


def config_from_training_args(args, optim_args=None) -> MuonConfig:
    """The MuonConfig of a Trainer run: ``args``' lr / decay / betas / eps + its ``optim_args``."""
    if isinstance(optim_args, MuonConfig):
        return optim_args.replace(
            lr=args.learning_rate,
            weight_decay=args.weight_decay,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
        )
    raw = optim_args if optim_args is not None else getattr(args, "optim_args", None)
    return MuonConfig.from_optim_args(
        raw,
        lr=args.learning_rate,
        weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )


def parse_optim_args(optim_args) -> MuonConfig:
    """``{"ns_steps": "7", ...}`` or ``"ns_steps=7,..."`` → :class:`MuonConfig` (errors name key and valid ones)."""
    return MuonConfig.from_optim_args(optim_args)


__all__ = ["config_from_training_args", "parse_optim_args"]
