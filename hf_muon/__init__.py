"""hf_muon: Muon (orthogonalized momentum) for the HuggingFace stack.

Pipeline, one concept per module:
    math          coefficients → orthogonalize → batching; spectral_power (U Σ^p Vᵀ); ns_schedule
    optimizer     update (the rule) → optimizer (one torch.optim.Optimizer: Muon + AdamW groups); reference
    routing       scaling (scale modes, lr conversion), fused (per-block QKV/gate_up), routing (which params go
                  where), factory
    distributed   distributed/ (FLOP-balanced owners, DDP all-gather, FSDP2 all-to-all)
    integrations  integrations/ (--optim muon, optim_args, Trainer/TRL mixins), run (launcher), cli
    diagnostics   diagnostics/ (spectra, callback, plots); evaluation/ + metrics/ (scoring)
    recipes       study/ (the optimizer-mismatch study), research (recipe helpers), data, chat, demo
"""

from .coefficients import KELLER, POLAR_EXPRESS, scalar_map, schedule
from .factory import create_optimizer
from .fused import Split
from .integrations import autoregister as _autoregister
from .optimizer import Muon
from .orthogonalize import newton_schulz, orthogonalize, svd_orthogonalize
from .routing import Route, param_groups, route, routing_report
from .scaling import SCALE_MODES, check_lr, convert_lr, scale_factor

__version__ = "0.1.0"

# `import hf_muon` makes optim="muon" / --optim muon valid, without importing transformers now.
_autoregister.install()

_LAZY = {
    "register": ("hf_muon.integrations.transformers", "register"),
    "MuonTrainer": ("hf_muon.integrations.trainer", "MuonTrainer"),
    "MuonTrainerMixin": ("hf_muon.integrations.trainer", "MuonTrainerMixin"),
    "MuonSFTTrainer": ("hf_muon.integrations.trl", "MuonSFTTrainer"),
    "MuonDiagnosticsCallback": ("hf_muon.diagnostics.callback", "MuonDiagnosticsCallback"),
}


def __getattr__(name):  # PEP 562: HF-dependent names are imported on first use
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hf_muon' has no attribute {name!r}")

__all__ = [
    "KELLER",
    "POLAR_EXPRESS",
    "SCALE_MODES",
    "Muon",
    "MuonDiagnosticsCallback",
    "MuonSFTTrainer",
    "MuonTrainer",
    "MuonTrainerMixin",
    "Route",
    "Split",
    "check_lr",
    "convert_lr",
    "create_optimizer",
    "newton_schulz",
    "orthogonalize",
    "param_groups",
    "register",
    "route",
    "routing_report",
    "scalar_map",
    "scale_factor",
    "schedule",
    "svd_orthogonalize",
]
