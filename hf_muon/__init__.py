"""hf_muon: Muon (orthogonalized momentum) for the HuggingFace stack.

Pipeline, one concept per module:
    coefficients → orthogonalize → batching (math)
    update → optimizer (one torch.optim.Optimizer: Muon + AdamW groups)
    scaling (scale modes, lr conversion), routing (which params go where)
"""

from .coefficients import KELLER, POLAR_EXPRESS, scalar_map, schedule
from .optimizer import Muon
from .orthogonalize import newton_schulz, orthogonalize, svd_orthogonalize
from .routing import Route, param_groups, route, routing_report
from .scaling import SCALE_MODES, check_lr, convert_lr, scale_factor

__version__ = "0.1.0"

__all__ = [
    "KELLER",
    "POLAR_EXPRESS",
    "SCALE_MODES",
    "Muon",
    "Route",
    "check_lr",
    "convert_lr",
    "newton_schulz",
    "orthogonalize",
    "param_groups",
    "route",
    "routing_report",
    "scalar_map",
    "scale_factor",
    "schedule",
    "svd_orthogonalize",
]
