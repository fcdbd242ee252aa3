"""The optimizers the benchmarks compare: one registry.

Fair routing: every Muon implementation gets the same Muon set, the parameters ``hf_muon.route(model)``
sends to Muon (:class:`Routed`); every other trainable parameter goes to the implementation's own AdamW
(Keller's ``muon``, ``pytorch_optimizer``) or to ``torch.optim.AdamW`` (``torch.optim.Muon``, ``heavyball``).
A benchmark either leaves weight decay to each optimizer's defaults (one group) or gives every optimizer
hf_muon's decay convention (``weight_decay`` on ≥2-D weights, none on norms and biases).

* builders: :func:`adamw`, :func:`torch_muon`, :func:`keller`, :func:`heavyball_muon`,
  :func:`pytorch_optimizer_muon`, :func:`hf_muon_optimizer` (through the plugin's one builder,
  :func:`hf_muon.create_optimizer` with a :class:`hf_muon.MuonConfig`); each returns a :class:`Stepper`.
* :func:`step_peers`: the line-up of the optimizer-step benchmarks; :data:`UNAVAILABLE`: peers that cannot
  run here, with the reason (kept in the reports, never dropped silently).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import hf_muon

ADAMW_LR = 1e-3
UNAVAILABLE = {
    "NVIDIA emerging-optimizers": "not on PyPI (`pip install emerging-optimizers` finds no distribution, checked "
    "2026-11-25); it installs from its git repository, which this machine cannot reach",
}


@dataclass
class Routed:
    """A model's trainable parameters as hf_muon routes them (``moe_experts`` for 3-D expert stacks)."""

    model: nn.Module
    moe_experts: str = "adamw"
    weight_decay: float | None = None  # None: each optimizer's default decay on one group
    params: list[nn.Parameter] = field(default_factory=list)  # every trainable parameter, once
    muon: list[nn.Parameter] = field(default_factory=list)  # hf_muon.route(...) == "muon"
    other: list[nn.Parameter] = field(default_factory=list)  # every other trainable parameter
    no_decay: set[int] = field(default_factory=set)  # ids of parameters hf_muon does not decay

    def __post_init__(self):
        routes = [r for r in hf_muon.route(self.model, moe_experts=self.moe_experts) if r.kind != "frozen"]
        muon = {id(r.param) for r in routes if r.kind == "muon"}
        self.no_decay = {id(r.param) for r in routes if not r.decay}
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.muon = [p for p in self.params if id(p) in muon]
        self.other = [p for p in self.params if id(p) not in muon]

    def groups(self, params: list[nn.Parameter]) -> list:
        """``params`` as AdamW groups: one plain list, or decay / no-decay groups with ``weight_decay`` set."""
        if self.weight_decay is None:
            return list(params)
        decay = [p for p in params if id(p) not in self.no_decay]
        no_decay = [p for p in params if id(p) in self.no_decay]
        return [
            g
            for g in (dict(params=decay, weight_decay=self.weight_decay), dict(params=no_decay, weight_decay=0.0))
            if g["params"]
        ]


def tensor_nbytes(obj, seen: set[int] | None = None) -> int:
    """Sum of ``nbytes`` over the tensors in a nested dict/list/tuple/set, each tensor once."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(tensor_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(tensor_nbytes(v, seen) for v in obj)
    return 0


class Stepper:
    """One or more optimizers stepped together (a Muon implementation plus an AdamW for the rest)."""

    def __init__(self, *optimizers: torch.optim.Optimizer, note: str = ""):
        self.optimizers = optimizers
        self.note = note  # how this run deviates from the optimizer's defaults, if it does

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def state_bytes(self) -> int:
        seen: set[int] = set()
        return sum(tensor_nbytes(dict(opt.state), seen) for opt in self.optimizers)


Build = Callable[[Routed, float, bool], Stepper]  # (routed parameters, lr, tiny) -> Stepper


def _with_rest(muon: torch.optim.Optimizer, r: Routed, lr: float, note: str = "") -> Stepper:
    """A Muon implementation plus torch AdamW on the rest (when there is a rest)."""
    if not r.other:
        return Stepper(muon, note=note)
    return Stepper(muon, torch.optim.AdamW(r.groups(r.other), lr=lr), note=note)


def _aux_groups(r: Routed) -> list[dict]:
    """Param groups of implementations with their own AdamW for the rest (``use_muon`` per group)."""
    return [dict(params=r.muon, use_muon=True)] + ([dict(params=r.other, use_muon=False)] if r.other else [])


def adamw(fused: bool = False) -> Build:
    """``torch.optim.AdamW`` on every parameter (``fused=True``: torch's fused kernel)."""
    kw = {"fused": True} if fused else {}
    return lambda r, lr, tiny: Stepper(torch.optim.AdamW(r.groups(r.params), lr=lr, **kw))


def torch_muon(**kw) -> Build:
    """``torch.optim.Muon(**kw)`` on the Muon set, torch AdamW on the rest."""
    return lambda r, lr, tiny: _with_rest(torch.optim.Muon(r.muon, lr=lr, **kw), r, lr)


def keller(r: Routed, lr: float, tiny: bool) -> Stepper:
    """Keller Jordan's ``muon`` package at its defaults, with its own Adam for the rest."""
    from muon import SingleDeviceMuonWithAuxAdam

    return Stepper(SingleDeviceMuonWithAuxAdam(_aux_groups(r)))


def heavyball_muon(r: Routed, lr: float, tiny: bool) -> Stepper:
    import heavyball

    if tiny:
        # torch.compile's cold start (~30 s per model on 2 cores) would blow the smoke test's budget.
        heavyball.utils.compile_mode = None
    return _with_rest(heavyball.Muon(r.muon), r, lr, note="torch.compile off (--tiny)" if tiny else "")


def pytorch_optimizer_muon(r: Routed, lr: float, tiny: bool) -> Stepper:
    from pytorch_optimizer import Muon

    return Stepper(Muon(_aux_groups(r)))


def hf_muon_optimizer(**knobs) -> Build:
    """``hf_muon.create_optimizer(model, MuonConfig(lr=…, moe_experts=…, **knobs))`` (routing knobs included)."""

    def build(r: Routed, lr: float, tiny: bool) -> Stepper:
        decay = {} if r.weight_decay is None else {"weight_decay": r.weight_decay}
        config = hf_muon.MuonConfig(lr=lr, moe_experts=r.moe_experts, **decay, **knobs)
        return Stepper(hf_muon.create_optimizer(r.model, config))

    return build


@dataclass(frozen=True)
class Peer:
    name: str
    family: str  # "adamw" | "peer" | "hf_muon"
    build: Build
    note: str = ""
    flattens_3d: bool = False  # treats an (E, out, in) stack as one (E, out·in) matrix


def ns_auto_dtype(device: torch.device) -> str:
    """The Newton-Schulz dtype hf_muon's ``ns_dtype="auto"`` picks on ``device`` for fp32 weights."""
    from hf_muon.ns.newton_schulz import resolve_dtype

    return str(resolve_dtype("auto", device, torch.float32)).replace("torch.", "")


def step_peers(device: torch.device) -> list[Peer]:
    """Torch's AdamW (default and fused), the other Muon implementations and hf_muon's variants."""
    auto = ns_auto_dtype(device)
    return [
        Peer("AdamW (torch)", "adamw", adamw(), "torch.optim.AdamW defaults (foreach=None)"),
        Peer("AdamW (torch, fused=True)", "adamw", adamw(fused=True), "torch's fused AdamW kernel"),
        Peer(
            "torch.optim.Muon + AdamW",
            "peer",
            torch_muon(adjust_lr_fn="match_rms_adamw"),
            "bf16 NS, one matrix at a time; rest on torch AdamW",
        ),
        Peer(
            "Keller muon (SingleDeviceMuonWithAuxAdam)",
            "peer",
            keller,
            "bf16 NS, one matrix at a time; own Adam for the rest",
        ),
        Peer(
            "heavyball.Muon + AdamW",
            "peer",
            heavyball_muon,
            "bf16 NS (stochastic rounding), torch.compile; rest on torch AdamW",
            flattens_3d=True,
        ),
        Peer(
            "pytorch_optimizer.Muon",
            "peer",
            pytorch_optimizer_muon,
            "bf16 NS, same-shape matrices stacked; own AdamW for the rest",
            flattens_3d=True,
        ),
        Peer(
            "hf_muon",
            "hf_muon",
            hf_muon_optimizer(),
            f"polar_express, NS {auto} (auto), ns_method=auto, batched, kernels=auto; AdamW part fused (default)",
        ),
        Peer(
            "hf_muon kernels=eager",
            "hf_muon",
            hf_muon_optimizer(kernels="eager"),
            f"polar_express, NS {auto}, batched; cast into the stack and weight write eager (the default before "
            "kernels=auto)",
        ),
        Peer(
            "hf_muon fused=False",
            "hf_muon",
            hf_muon_optimizer(fused=False),
            f"polar_express, NS {auto}, batched; AdamW part on torch's default (unfused) path",
        ),
        Peer("hf_muon coefficients=keller", "hf_muon", hf_muon_optimizer(coefficients="keller"), f"NS {auto}, batched"),
        Peer(
            "hf_muon split_fused=True",
            "hf_muon",
            hf_muon_optimizer(split_fused=True),
            f"polar_express, NS {auto}, batched; fused QKV/gate_up per block (GPT-2 c_attn; Llama/Qwen have none)",
        ),
        Peer(
            "hf_muon batched=False",
            "hf_muon",
            hf_muon_optimizer(batched=False),
            f"polar_express, NS {auto}, one matrix at a time",
        ),
        Peer(
            "hf_muon ns_method=newton_schulz",
            "hf_muon",
            hf_muon_optimizer(ns_method="newton_schulz"),
            f"polar_express, NS {auto}, standard NS on every matrix (the default before ns_method=auto)",
        ),
        Peer(
            "hf_muon ns_method=gram",
            "hf_muon",
            hf_muon_optimizer(ns_method="gram"),
            f"polar_express, NS {auto}, Gram-space NS on every matrix (bf16: restarts from step 2; every other step from 256 rows)",
        ),
        Peer(
            "hf_muon 4 steps polar_express_1e-2",
            "hf_muon",
            hf_muon_optimizer(ns_steps=4, coefficients="polar_express_1e-2"),
            f"ns_steps=4, coefficients=polar_express_1e-2, NS {auto}, batched",
        ),
        Peer(
            "hf_muon ns_dtype=bfloat16",
            "hf_muon",
            hf_muon_optimizer(ns_dtype="bfloat16"),
            "polar_express, NS bf16, batched",
        ),
        Peer(
            "hf_muon ns_dtype=float32",
            "hf_muon",
            hf_muon_optimizer(ns_dtype="float32"),
            "polar_express, NS fp32, batched",
        ),
    ]


def step_peer(name: str, device: torch.device) -> Peer:
    return next(p for p in step_peers(device) if p.name == name)
