"""hf_muon: Muon (orthogonalized momentum) for the HuggingFace stack.

The plugin (this package; needs only torch), in pipeline order::

    ns/            Newton-Schulz math: coefficients, newton_schulz, batching, blocks, spectral_power,
                   schedule, cost (the FLOP formula), reference (exact SVD, float64 iteration)
    config.py      MuonConfig: every knob once (type, default, range, doc); parsing and validation
    optim/         the Optimizer as stages: screen → rules → jobs → backends/ (local, replicated, sharded:
                   the one override point) → apply → adamw; state (layout + dtype policy), validate, stats
    model/         routing (labels each tensor), groups (param_groups), fused, scaling, layers
    factory.py     create_optimizer: the one builder (config → groups → Muon)
    integrations/  translate and delegate: transformers (--optim muon), autoregister, trainer, trl, optim_args
    diagnostics/   spectral numbers, the Trainer callback, plots
    run.py, cli.py launchers

The lab (``hf_muon.lab``: study, evaluation, metrics, research helpers, data, demo; ``pip install
hf_muon[study]``) imports the plugin and never the reverse.
"""

from .config import MuonConfig
from .factory import create_optimizer
from .integrations import autoregister as _autoregister
from .model.groups import param_groups
from .model.routing import Route, route, routing_report
from .ns.blocks import Split
from .ns.coefficients import KELLER, POLAR_EXPRESS, scalar_map, schedule
from .ns.newton_schulz import newton_schulz, orthogonalize
from .ns.reference import svd_orthogonalize
from .ns.scaling import SCALE_MODES, check_lr, convert_lr, scale_factor
from .optim.muon import Muon

__version__ = "0.2.0"

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
    "MuonConfig",
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
