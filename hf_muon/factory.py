"""``create_optimizer``: a routed :class:`hf_muon.Muon` for any model, for plain loops and accelerate.

The result is a single ``torch.optim.Optimizer``, so ``accelerator.prepare(model, opt)`` wraps it in
``AcceleratedOptimizer`` unchanged (fp16 ``GradScaler``, gradient accumulation and schedulers included).
"""

from __future__ import annotations

from .optimizer import Muon
from .routing import param_groups

_ROUTING_KEYS = ("lora_policy", "moe_experts", "conv", "include", "exclude", "split_fused")


def create_optimizer(model, lr: float = 1e-3, *, adamw_lr: float | None = None, muon_lr: float | None = None,
                     weight_decay: float = 0.1, **kwargs) -> Muon:
    """Route ``model`` and build :class:`Muon`.

    ``lr`` is the base lr; ``muon_lr`` / ``adamw_lr`` override it per kind. Routing keywords
    (``lora_policy``, ``moe_experts``, ``conv``, ``include``, ``exclude``, ``split_fused``) go to
    :func:`hf_muon.param_groups`; everything else (``scale_mode``, ``ns_steps``, ``betas`` …) to
    :class:`Muon`.
    """
    routing = {k: kwargs.pop(k) for k in _ROUTING_KEYS if k in kwargs}
    groups = param_groups(model, lr=muon_lr, adamw_lr=adamw_lr, weight_decay=weight_decay, **routing)
    return Muon(groups, lr=lr, weight_decay=weight_decay, **kwargs)
