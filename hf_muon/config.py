"""``MuonConfig``: every optimizer and routing knob of hf_muon, once.

Each field carries its type, default, valid range and a one-line doc (``dataclasses.fields`` metadata); that
metadata is the one argument doc of the project (the README's ``--optim_args`` table is generated from it,
:func:`markdown_table`, and a test keeps the two equal). A config is built once, from keyword arguments
(``MuonConfig(ns_steps=7)``), from ``--optim_args`` (:meth:`MuonConfig.from_optim_args`, strings parsed here),
or from a dict / YAML file (:meth:`MuonConfig.from_dict`, :meth:`MuonConfig.from_yaml`), and it is what
routing, :func:`hf_muon.param_groups`, :class:`hf_muon.Muon`, :func:`hf_muon.create_optimizer`, the Trainer
factory, the recipes and the benchmarks consume. Parsing and validation live here only: an unknown key or a
bad value raises ``ValueError`` naming the key and listing the valid keys or values. Per-group overrides in
hand-built param groups are checked by the same validators (:func:`check`).

Scopes: ``group`` knobs are per-param-group defaults (a group may override them), ``optimizer`` knobs belong
to the optimizer as a whole, ``routing`` knobs decide which parameters go to Muon. Knobs marked
"TrainingArguments" come from ``--learning_rate`` / ``--weight_decay`` / ``--adam_*`` in the Trainer path and
are not ``--optim_args`` keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import knobs
from .knobs import knob, reject_unknown, split_optim_args
from .ns.kernels import KERNEL_MODES
from .ns.newton_schulz import METHODS, NS_DTYPES
from .ns.scaling import SCALE_MODES
from .ns.schedule import DepthSchedule

NONFINITE_POLICIES = ("error", "skip")
DISTRIBUTED_MODES = ("auto", "none")
UPDATE_BASES = ("momentum", "adam")
MOMENTUM_DTYPES = ("float32",)
VARIANTS = ("muon", "normuon", "adamuon")
LORA_POLICIES = ("adamw", "b_only", "both")
MOE_POLICIES = ("adamw", "muon")
CONV_POLICIES = ("adamw", "muon")


@dataclass
class MuonConfig:
    """All hf_muon knobs; see the module docstring and each field's doc (``MuonConfig.doc(name)``)."""

    # ------------------------------------------------------------------ learning rates and decay
    lr: float = knob(
        1e-3,
        "lr of every group that sets none (moonlight-scaled Muon groups take AdamW-sized lrs)",
        "float",
        lo=0.0,
        optim_arg=None,
    )
    adamw_lr: float | None = knob(
        None, "lr of AdamW groups that set none (default: lr)", "float", lo=0.0, optional=True, optim_arg=None
    )
    muon_lr: float | None = knob(
        None, "absolute lr of Muon groups that set none (default: lr)", "float", lo=0.0, optional=True
    )
    muon_lr_ratio: float | None = knob(None, "Muon lr = ratio × lr (not with muon_lr)", "float", lo=0.0, optional=True)
    weight_decay: float = knob(
        0.1,
        "decoupled decay W ← W(1 − lr·λ) (biases and norms get 0 via routing)",
        "float",
        lo=0.0,
        optim_arg=None,
    )
    # ------------------------------------------------------------------ Muon rule
    momentum: float = knob(0.95, "Muon momentum μ (B ← μB + G)", "float", lo=0.0, hi=1.0, hi_open=True)
    nesterov: bool = knob(True, "Nesterov mix U = G + μB (else U = B)", "bool")
    ns_steps: Any = knob(
        5,
        "Newton-Schulz iterations: an int, auto, or a depth schedule last<k>:<steps>[:<default>]",
        "ns_steps",
    )
    coefficients: Any = knob(
        "polar_express",
        "Newton-Schulz coefficient schedule (Polar Express, Keller's quintic, custom)",
        "coefficients",
    )
    scale_mode: str = knob(
        "moonlight",
        "update scale α: moonlight 0.2·√max(A,B), keller, mup, none",
        "choice",
        choices=SCALE_MODES,
    )
    ns_dtype: str = knob(
        "auto",
        "NS compute dtype (auto: bf16 on CUDA and bf16-capable CPUs, else fp32)",
        "choice",
        choices=NS_DTYPES,
    )
    ns_method: str = knob(
        "auto",
        "auto (Gram-space NS where its FLOPs ≤ 0.9× standard), newton_schulz, gram, svd (exact)",
        "choice",
        choices=METHODS,
    )
    kernels: str = knob(
        "auto",
        "cast into the NS stack + weight write: auto (torch.compile'd on CPU for matrices of "
        "≥ 262,144 elements; eager where compiling fails), eager",
        "choice",
        choices=KERNEL_MODES,
    )
    momentum_dtype: str | None = knob(
        None,
        "None (the parameter's dtype) or float32 (fp32 buffers for bf16/fp16)",
        "choice",
        choices=MOMENTUM_DTYPES,
        optional=True,
    )
    spectral_power: float = knob(0.0, "apply U Σ^p Vᵀ with this p (0 = orthogonalize)", "float", lo=0.0, hi=1.0)
    update_base: str = knob(
        "momentum",
        "what is orthogonalized: momentum (Muon) or adam (m̂/(√v̂+ε))",
        "choice",
        choices=UPDATE_BASES,
    )
    auto_quantile: float = knob(
        0.5,
        "ns_steps=auto: σ-quantile of the normalised update to lift",
        "float",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        hi_open=True,
    )
    auto_target: float = knob(
        0.5, "ns_steps=auto: value that quantile must reach", "float", lo=0.0, hi=1.0, lo_open=True
    )
    auto_every: int = knob(100, "ns_steps=auto: optimizer steps between re-estimates", "int", lo=1)
    auto_min: int = knob(1, "ns_steps=auto: fewest steps", "int", lo=0)
    auto_max: int = knob(15, "ns_steps=auto: most steps", "int", lo=0, hi=100)
    variant: str = knob(
        "muon",
        "update rule: muon, normuon (rows of O divided by an EMA of their mean square), "
        "adamuon (O of sign(U), divided element-wise by an EMA of O²); both RMS-matched",
        "choice",
        choices=VARIANTS,
    )
    variant_beta2: float = knob(
        0.95,
        "normuon/adamuon: EMA factor β2 of the second moment of O",
        "float",
        lo=0.0,
        hi=1.0,
        hi_open=True,
    )
    variant_eps: float = knob(
        1e-8,
        "normuon/adamuon: ε > 0 in O/(√v + ε) (0 would give 0/0 on a zero row)",
        "float",
        lo=0.0,
        lo_open=True,
    )
    cautious_wd: bool = knob(
        False,
        "Muon groups: decay only coordinates where the update O and the weight agree in sign (O·W ≥ 0)",
        "bool",
    )
    # ------------------------------------------------------------------ AdamW groups (and the adam base)
    betas: tuple = knob((0.9, 0.999), "Adam betas (β1, β2), each in [0, 1)", "betas", optim_arg=None)
    eps: float = knob(1e-8, "Adam ε", "float", lo=0.0, optim_arg=None)
    fused: bool | None = knob(
        None,
        "AdamW groups on torch's fused kernel (None: wherever it applies)",
        "bool",
        optional=True,
        optim_arg="adamw_fused",
    )
    foreach: bool | None = knob(
        None,
        "AdamW groups' foreach path when not fused (as torch.optim.AdamW)",
        "bool",
        optional=True,
        optim_arg=None,
    )
    nonfinite: str = knob(
        "error",
        "non-finite gradient: error (nothing is written) or skip (counted per group)",
        "choice",
        choices=NONFINITE_POLICIES,
    )
    # ------------------------------------------------------------------ the optimizer as a whole
    batched: bool = knob(True, "stack same-shape matrices into one NS call", "bool", scope="optimizer")
    distributed: str = knob(
        "auto",
        "auto: each matrix orthogonalized once by an owner rank; none: every rank alone",
        "choice",
        choices=DISTRIBUTED_MODES,
        scope="optimizer",
    )
    replica_check: bool = knob(
        True,
        "first step: check that ranks sharing Muon work hold the same gradients",
        "bool",
        scope="optimizer",
    )
    # ------------------------------------------------------------------ routing
    lora_policy: str = knob(
        "both",
        "LoRA factors: both (A and B on Muon), b_only (B on Muon), adamw",
        "choice",
        choices=LORA_POLICIES,
        scope="routing",
    )
    moe_experts: str = knob(
        "muon",
        "3-D MoE expert stacks: muon (per expert, as Moonlight/Kimi K2), or adamw",
        "choice",
        choices=MOE_POLICIES,
        scope="routing",
    )
    conv: str = knob(
        "adamw",
        "conv weights: adamw, or muon (flattened to (out, in·k))",
        "choice",
        choices=CONV_POLICIES,
        scope="routing",
    )
    include: str | None = knob(
        None, "regex: force matching ≥2-D parameters onto Muon", "regex", optional=True, scope="routing"
    )
    exclude: str | None = knob(
        None,
        "regex: keep matching parameters on AdamW (wins over include)",
        "regex",
        optional=True,
        scope="routing",
    )
    split_fused: bool = knob(False, "orthogonalize fused QKV / gate_up blocks separately", "bool", scope="routing")
    per_head: bool = knob(
        False,
        "orthogonalize q/k/v (and fused QKV) head by head (heads from the HF config)",
        "bool",
        scope="routing",
    )
    qk_clip: float = knob(
        0.0,
        "QK-Clip τ: after each step, scale q/k heads whose max logit exceeded τ (0 = off; needs the model)",
        "float",
        lo=0.0,
        scope="routing",
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, check(f.name, getattr(self, f.name)))
        if self.muon_lr is not None and self.muon_lr_ratio is not None:
            raise ValueError("MuonConfig: give muon_lr or muon_lr_ratio, not both")
        if self.auto_min > self.auto_max:
            raise ValueError(f"MuonConfig: auto_min={self.auto_min} > auto_max={self.auto_max}")
        check_variant(self.variant, self.update_base, self.spectral_power, "MuonConfig: ")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict | None, where: str = "MuonConfig") -> MuonConfig:
        """From a dict (a YAML mapping): unknown keys are errors listing the valid ones."""
        data = dict(data or {})
        reject_unknown(data, KNOBS, what=f"{where}: unknown key")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path) -> MuonConfig:
        import yaml

        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f), where=str(path))

    @classmethod
    def from_optim_args(cls, optim_args: dict | str | None, **base) -> MuonConfig:
        """From transformers' ``optim_args`` (``{key: str}`` or the raw ``"k=v,k=v"``), over ``base`` values
        (``lr``/``weight_decay``/``betas``/``eps`` from ``TrainingArguments``). Values cannot contain commas
        (transformers splits on them): custom coefficients are ``a:b:c`` triples joined by ``;``."""
        items = split_optim_args(optim_args)
        values = dict(base)
        for key, raw in items.items():
            reject_unknown([key], OPTIM_ARGS, what="unknown optim_args key", after=" for --optim muon")
            name = OPTIM_ARGS[key]
            values[name] = parse_text(name, str(raw), label=f"optim_args {key}")
        if values.get("muon_lr") is not None and values.get("muon_lr_ratio") is not None:
            raise ValueError("optim_args: give muon_lr or muon_lr_ratio, not both")
        return cls(**values)

    def replace(self, **changes) -> MuonConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(v) if isinstance(v, DepthSchedule) else v
        return out

    # ------------------------------------------------------------------ views by scope
    def scoped(self, scope: str) -> dict:
        return {n: getattr(self, n) for n, f in KNOBS.items() if f.metadata["scope"] == scope}

    def routing_kwargs(self) -> dict:
        return self.scoped("routing")

    def muon_lr_for(self) -> float:
        """The lr Muon groups get when they set none."""
        if self.muon_lr is not None:
            return self.muon_lr
        if self.muon_lr_ratio is not None:
            return self.muon_lr_ratio * self.lr
        return self.lr

    def group_defaults(self) -> dict:
        """Per-group defaults for ``torch.optim.Optimizer`` (lr split by kind is applied per group)."""
        out = {n: getattr(self, n) for n in GROUP_KNOBS}
        out["betas"] = tuple(out["betas"])
        return out

    @staticmethod
    def doc(name: str) -> str:
        return KNOBS[name].metadata["doc"]


KNOBS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(MuonConfig)}
# the per-group hyperparameters every param group carries (the lr knobs are resolved into "lr" per group kind)
GROUP_KNOBS: tuple[str, ...] = tuple(
    n for n, f in KNOBS.items() if f.metadata["scope"] == "group" and n not in ("adamw_lr", "muon_lr", "muon_lr_ratio")
)
OPTIM_ARGS: dict[str, str] = {
    (f.name if f.metadata["optim_arg"] is True else f.metadata["optim_arg"]): f.name
    for f in KNOBS.values()
    if f.metadata["optim_arg"]
}


# ---------------------------------------------------------------------------------------- validation
def valid_text(name: str) -> str:
    """Human-readable valid values of a knob (for errors and the README table)."""
    return knobs.valid_text(KNOBS[name].metadata)


def check(name: str, value, where: str = "") -> Any:
    """Validate (and normalise) one knob value; raises ``ValueError`` naming ``where`` + the key."""
    reject_unknown([name], KNOBS, what=f"{where}unknown key")
    return knobs.check_value(name, KNOBS[name].metadata, value, where)


def check_variant(variant: str, update_base: str, spectral_power: float, where: str = "") -> None:
    """normuon / adamuon transform the *orthogonalized momentum*: refuse them on other bases."""
    if variant != "muon" and (update_base != "momentum" or spectral_power):
        raise ValueError(
            f"{where}variant={variant!r} needs update_base='momentum' and spectral_power=0 (got "
            f"{update_base!r}, {spectral_power})"
        )


def parse_text(name: str, text: str, label: str | None = None) -> Any:
    """A knob's value from a string (``--optim_args``), then :func:`check`."""
    return knobs.parse_value(name, KNOBS[name].metadata, text, label)


def markdown_table() -> str:
    """The README's ``--optim_args`` table, generated from the field metadata."""
    lines = ["| key | default | valid | what it does |", "|---|---|---|---|"]
    for key in sorted(OPTIM_ARGS):
        name = OPTIM_ARGS[key]
        default = KNOBS[name].default
        lines.append(f"| `{key}` | `{default}` | {valid_text(name)} | {KNOBS[name].metadata['doc']} |")
    return "\n".join(lines)


__all__ = [
    "GROUP_KNOBS",
    "KNOBS",
    "OPTIM_ARGS",
    "VARIANTS",
    "MuonConfig",
    "check",
    "check_variant",
    "markdown_table",
    "parse_text",
    "reject_unknown",
]
