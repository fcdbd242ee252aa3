"""``create_optimizer``: the one builder of a routed :class:`hf_muon.Muon`.

Plain loops, accelerate (``accelerator.prepare(model, opt)`` wraps the result in ``AcceleratedOptimizer``
unchanged: fp16 ``GradScaler``, gradient accumulation and schedulers included), the Trainer factory, the
recipes and the benchmarks all build through here: a :class:`hf_muon.MuonConfig` (or its fields as keyword
arguments) → :func:`hf_muon.param_groups` → :class:`hf_muon.Muon`.
"""

from __future__ import annotations

from .config import MuonConfig
from .model.groups import param_groups
from .optim.muon import Muon


def create_optimizer(
    model, config: MuonConfig | dict | None = None, *, backend=None, process_group=None, routes=None, **knobs
) -> Muon:
    """Route ``model`` and build :class:`Muon` from ``config`` (a MuonConfig or a dict) and/or its fields.

    ``lr`` is the base lr; ``muon_lr`` / ``muon_lr_ratio`` / ``adamw_lr`` set it per kind. The model-level knobs
    ``per_head`` (head splits, through the routes) and ``qk_clip`` (the post-step hook, which needs the model's
    attention modules) are handled here too. ``routes``: ``route(model, config)`` when the caller already has them
    (the model is then routed once).
    """
    if isinstance(config, dict):
        config = MuonConfig.from_dict(config)
    config = (config or MuonConfig()).replace(**knobs) if knobs else (config or MuonConfig())
    return Muon(
        param_groups(model, config, routes=routes),
        config=config,
        backend=backend,
        process_group=process_group,
        model=model,
    )


__all__ = ["create_optimizer"]
