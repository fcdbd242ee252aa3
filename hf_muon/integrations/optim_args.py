"""Typed parsing of ``--optim_args`` for ``--optim muon``.

transformers hands optimizer handlers ``optim_args`` as ``{key: str}`` after removing every space and
splitting on ``,`` and ``=``. So values cannot contain commas: custom coefficient schedules are written
``a:b:c`` with ``;`` between steps (``coefficients=3.4445:-4.775:2.0315``), and include/exclude take one
regex each (use ``|`` for alternatives). Learning rate, weight decay, Adam betas and eps come from
``TrainingArguments``; these keys only cover what is Muon's own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..coefficients import PRESETS
from ..optimizer import MOMENTUM_DTYPES, NONFINITE_POLICIES
from ..orthogonalize import METHODS, NS_DTYPES
from ..routing import CONV_POLICIES, LORA_POLICIES, MOE_POLICIES
from ..scaling import SCALE_MODES

_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}


@dataclass
class MuonArgs:
    """Every Muon knob reachable from ``--optim_args`` (defaults = hf_muon.Muon's)."""

    scale_mode: str = "moonlight"
    ns_steps: int | str = 5  # int, "auto", or "last<k>:<steps>[:<default>]"
    coefficients: str | list = "polar_express"
    muon_lr: float | None = None  # absolute Muon lr
    muon_lr_ratio: float | None = None  # Muon lr = ratio × --learning_rate
    momentum: float = 0.95
    nesterov: bool = True
    lora_policy: str = "adamw"
    moe_experts: str = "adamw"
    conv: str = "adamw"
    include: str | None = None
    exclude: str | None = None
    split_fused: bool = False  # orthogonalize fused QKV / gate_up blocks separately (hf_muon.fused)
    ns_dtype: str = "auto"
    ns_method: str = "newton_schulz"
    momentum_dtype: str | None = None
    nonfinite: str = "error"
    batched: bool = True
    adamw_fused: bool | None = None  # None: torch's fused AdamW kernel wherever it applies
    spectral_power: float = 0.0
    update_base: str = "momentum"
    auto_quantile: float = 0.5
    auto_target: float = 0.5
    auto_every: int = 100

    def muon_lr_for(self, learning_rate: float) -> float:
        if self.muon_lr is not None:
            return self.muon_lr
        if self.muon_lr_ratio is not None:
            return self.muon_lr_ratio * learning_rate
        return learning_rate

    def optimizer_kwargs(self) -> dict:
        """Keyword arguments for :class:`hf_muon.Muon` (lr/decay/betas/eps come from elsewhere)."""
        return dict(scale_mode=self.scale_mode, coefficients=self.coefficients,
                    momentum=self.momentum, nesterov=self.nesterov, ns_dtype=self.ns_dtype, ns_method=self.ns_method,
                    momentum_dtype=self.momentum_dtype, nonfinite=self.nonfinite, batched=self.batched,
                    fused=self.adamw_fused, spectral_power=self.spectral_power, update_base=self.update_base)

    def group_options(self) -> dict:
        """Per-group keys set through :func:`hf_muon.param_groups` (``ns_steps`` may be a schedule)."""
        return dict(ns_steps=self.ns_steps, auto_quantile=self.auto_quantile, auto_target=self.auto_target,
                    auto_every=self.auto_every)

    def routing_kwargs(self) -> dict:
        return dict(lora_policy=self.lora_policy, moe_experts=self.moe_experts, conv=self.conv,
                    include=self.include, exclude=self.exclude, split_fused=self.split_fused)


def _choice(valid):
    def parse(key, v):
        if v not in valid:
            raise ValueError(f"optim_args {key}={v!r} is not valid; valid values: {', '.join(map(str, valid))}")
        return v

    return parse


def _number(kind, lo=None, hi=None, hi_open=False):
    def parse(key, v):
        try:
            x = kind(v)
        except ValueError:
            raise ValueError(f"optim_args {key}={v!r} is not a valid {kind.__name__}") from None
        if (lo is not None and x < lo) or (hi is not None and (x >= hi if hi_open else x > hi)):
            raise ValueError(f"optim_args {key}={v!r} is out of range [{lo}, {hi}{')' if hi_open else ']'}")
        return x

    return parse


def _bool(key, v):
    s = v.lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"optim_args {key}={v!r} is not a boolean; valid values: true, false")


def _coefficients(key, v):
    if v in PRESETS or v in ("polar-express", "polarexpress"):
        return v
    try:
        steps = [[float(x) for x in part.split(":")] for part in v.split(";") if part]
    except ValueError:
        steps = []
    if not steps or any(len(t) != 3 for t in steps):
        raise ValueError(
            f"optim_args {key}={v!r} is not valid; valid values: {', '.join(PRESETS)}, or a:b:c triples joined by ';'"
        )
    return steps


def _optional(parse):
    def wrapped(key, v):
        return None if v.lower() in ("none", "null", "") else parse(key, v)

    return wrapped


def _text(key, v):
    return v


def _ns_steps(key, v):
    from ..ns_schedule import parse_schedule

    try:
        out = parse_schedule(v)
    except ValueError:
        out = None
    if out is None or isinstance(out, dict):
        raise ValueError(f"optim_args {key}={v!r} is not valid; valid values: an int, auto, last<k>:<steps>[:<default>]")
    if isinstance(out, int) and not 0 <= out <= 100:
        raise ValueError(f"optim_args {key}={v!r} is out of range [0, 100]")
    return v if not isinstance(out, int) else out


PARSERS = {
    "scale_mode": _choice(SCALE_MODES),
    "ns_steps": _ns_steps,
    "coefficients": _coefficients,
    "muon_lr": _number(float, 0.0),
    "muon_lr_ratio": _number(float, 0.0),
    "momentum": _number(float, 0.0, 1.0, hi_open=True),
    "nesterov": _bool,
    "lora_policy": _choice(LORA_POLICIES),
    "moe_experts": _choice(MOE_POLICIES),
    "conv": _choice(CONV_POLICIES),
    "include": _text,
    "exclude": _text,
    "split_fused": _bool,
    "ns_dtype": _choice(NS_DTYPES),
    "ns_method": _choice(METHODS),
    "momentum_dtype": _optional(_choice([m for m in MOMENTUM_DTYPES if m])),
    "nonfinite": _choice(NONFINITE_POLICIES),
    "batched": _bool,
    "adamw_fused": _optional(_bool),
    "spectral_power": _number(float, 0.0, 1.0),
    "update_base": _choice(("momentum", "adam")),
    "auto_quantile": _number(float, 0.0, 1.0),
    "auto_target": _number(float, 0.0, 1.0),
    "auto_every": _number(int, 1),
}
assert set(PARSERS) == {f.name for f in fields(MuonArgs)}


def parse_optim_args(optim_args: dict[str, str] | str | None) -> MuonArgs:
    """``{"ns_steps": "7", ...}`` (or the raw ``"k=v,k=v"`` string) → :class:`MuonArgs`.

    Unknown keys and bad values raise ``ValueError`` listing the valid keys or values.
    """
    if optim_args is None:
        return MuonArgs()
    if isinstance(optim_args, str):
        items = {}
        for item in optim_args.replace(" ", "").split(","):
            if not item:
                continue
            if item.count("=") != 1:
                raise ValueError(f"optim_args item {item!r} must look like key=value")
            k, v = item.split("=")
            items[k] = v
        optim_args = items
    values = {}
    for key, raw in optim_args.items():
        if key not in PARSERS:
            raise ValueError(f"unknown optim_args key {key!r} for --optim muon; valid keys: {', '.join(sorted(PARSERS))}")
        values[key] = PARSERS[key](key, str(raw))
    if values.get("muon_lr") is not None and values.get("muon_lr_ratio") is not None:
        raise ValueError("optim_args: give muon_lr or muon_lr_ratio, not both")
    return MuonArgs(**values)
