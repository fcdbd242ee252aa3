"""``hf_muon.Muon``: one ``torch.optim.Optimizer`` holding Muon groups and AdamW groups.

Each param group carries ``use_muon``. The step is a pipeline of small stages, each in its own module::

    screen      every gradient of every group checked before anything is written   (screen.py)
    guard       gradients big enough to overflow a rule's state: run first, checked  (guard.py)
    rule        Muon groups: the direction to orthogonalize (momentum, adam base)  (rules.py)
      prepare   the variant's change of the direction (adamuon: sign)               (variants/)
    jobs        directions as matrices with their NS settings                       (jobs.py)
    backend     orthogonalize: local / replicated (DDP) / sharded (DTensor)         (backends/)
      transform the variant's change of O (normuon, adamuon)                        (variants/)
    apply       decoupled (or cautious) decay, scale α, the write                   (apply.py)
    adamw       AdamW groups through torch's kernel, bit-identical to torch         (adamw.py)
    post-step   hooks through torch's ``register_step_post_hook``: QK-Clip            (qk_clip.py)

Hyperparameters come from :class:`hf_muon.MuonConfig` (keyword arguments are its fields); every group keeps
its learning rate under ``"lr"`` (schedulers, ``AcceleratedOptimizer`` and DCP's zero-lr fake step rely on it)
and only primitives besides tensors, so ``state_dict()`` loads with ``torch.load(weights_only=True)``.
Per-parameter layout facts (``transposed``, ``experts``, ``split``) are group keys, never side tables keyed by
``id(param)``, so they survive FSDP2 swapping the parameter objects. The state layout and its dtype policy
(fp32 momentum survives ``load_state_dict``) live in :mod:`hf_muon.optim.state`.

The orthogonalize backend is the one override point: pass ``backend=`` or override :meth:`Muon.orthogonalize`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..config import KNOBS, MuonConfig, check_variant, reject_unknown
from ..ns import kernels
from ..ns.batching import Job
from ..ns.newton_schulz import NonFiniteInput
from ..ns.tensors import is_dtensor
from . import state as S
from .adamw import adamw_step
from .apply import apply_group, update_scale
from .backends import select_backend
from .guard import directions as rule_directions
from .guard import early_directions
from .jobs import make_jobs
from .screen import label_of, screen
from .stats import StepStats
from .validate import validate_group
from .variants import VARIANTS

# group keys besides the knobs: layout facts set by routing, torch's AdamW flags, counters
_LAYOUT = dict(use_muon=True, transposed=False, experts=False, split=None)
_TORCH_ADAMW = dict(amsgrad=False, maximize=False, capturable=False, differentiable=False)
_COUNTERS = dict(nonfinite_skipped=0, step=0)


class Muon(torch.optim.Optimizer):
    """Muon for matrix weights + AdamW for everything else, in one optimizer.

    Args:
        params: parameters or param groups; build them with :func:`hf_muon.param_groups`, which routes
            each tensor and sets ``use_muon``. A group without ``use_muon`` is a Muon group.
        lr: learning rate of groups that set none (Muon groups get ``muon_lr`` / ``muon_lr_ratio·lr`` when
            given, AdamW groups ``adamw_lr`` when given).
        config: a :class:`hf_muon.MuonConfig`; keyword arguments override its fields. Every knob, its range
            and its meaning are documented there, once.
        backend: the orthogonalize backend (default: chosen from ``config.distributed`` and the process group,
            :func:`hf_muon.optim.backends.select_backend`).
        process_group: group for the replicated (DDP) exchange (default: WORLD).
        model: the model the groups come from; needed only for ``config.qk_clip > 0`` (the attention heads and
            the logit capture, :mod:`hf_muon.optim.qk_clip`). :func:`hf_muon.create_optimizer` passes it.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | None = None,
        *,
        config: MuonConfig | None = None,
        backend=None,
        process_group=None,
        model=None,
        **knobs,
    ):
        if lr is not None:
            knobs["lr"] = lr
        reject_unknown(knobs, KNOBS, what="Muon got an unknown keyword", listing="valid", error=TypeError)
        routing = [k for k in knobs if KNOBS[k].metadata["scope"] == "routing"]
        if routing:
            raise ValueError(
                f"{routing[0]} is a routing knob: pass it to hf_muon.param_groups(model, ...) or "
                "hf_muon.create_optimizer(model, ...), which decide what Muon receives"
            )
        config = (config or MuonConfig()).replace(**knobs) if knobs else (config or MuonConfig())
        self.config = config
        defaults = dict(config.group_defaults(), **_LAYOUT, **_TORCH_ADAMW, **_COUNTERS)
        defaults["lr"] = config.muon_lr_for()
        self._adamw_lr = config.adamw_lr if config.adamw_lr is not None else config.lr
        self.batched, self.distributed, self.process_group = config.batched, config.distributed, process_group
        self.backend = (
            backend if backend is not None else select_backend(config.distributed, process_group, config.batched)
        )
        # False, "light" (NS time, Muon update RMS, lrs: cheap) or "full" (+ AdamW update RMS, a pass over every
        # AdamW parameter). MuonDiagnosticsCallback sets it per step and reads `last_stats`.
        self.track_stats: bool | str = False
        self.last_stats: dict = {}
        super().__init__(list(params), defaults)  # each group is validated in add_param_group
        if not any(g["use_muon"] and g["params"] for g in self.param_groups):
            raise ValueError(
                "Muon was requested but no parameter is routed to it (every group has use_muon=False or no params). "
                "Check include/exclude patterns and the routing report (hf_muon.routing_report(model))."
            )
        # compiled kernels (hf_muon.ns.kernels) will run: probe the compiler at the first step
        self._probe_kernels = any(
            g["use_muon"] and kernels.eligible(p, g["kernels"]) for g in self.param_groups for p in g["params"]
        )
        S.install(self)
        if hasattr(self.backend, "bind"):  # names in layout errors, replica_check, the agreed NS dtype in state_dict
            self.backend.bind(self)
        self.qk_clip = None
        if config.qk_clip:
            if model is None:
                raise ValueError(
                    "qk_clip needs the model (its attention heads and logits): use "
                    "hf_muon.create_optimizer(model, qk_clip=τ), or Muon(param_groups(model, config), "
                    "config=config, model=model)"
                )
            from .qk_clip import QKClip

            self.qk_clip = QKClip(self, model, config.qk_clip)

    @property
    def comm_stats(self):
        return self.backend.comm_stats

    def add_param_group(self, param_group: dict) -> None:
        if isinstance(param_group, dict) and not param_group.get("use_muon", True) and "lr" not in param_group:
            param_group = dict(param_group, lr=self._adamw_lr)
        super().add_param_group(param_group)
        g, gi = self.param_groups[-1], len(self.param_groups) - 1
        validate_group(g, gi)
        if g["use_muon"]:
            check_variant(g["variant"], g["update_base"], g["spectral_power"], f"param_groups[{gi}]: ")

    def __setstate__(self, state: dict) -> None:
        """``load_state_dict`` keeps the *saved* groups: knobs added since a checkpoint was written (``variant``,
        ``cautious_wd``, …) get this optimizer's defaults, so older checkpoints still resume."""
        super().__setstate__(state)
        for g in self.param_groups:
            for k, v in self.defaults.items():
                g.setdefault(k, v)

    # ------------------------------------------------------------------ the override point
    def orthogonalize(self, jobs: list[Job]) -> list[torch.Tensor]:
        """Orthogonalize every job's matrix through the backend chosen at construction."""
        return self.backend.orthogonalize(jobs)

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = screen(self.param_groups)  # raises before anything is written
        if getattr(self, "_probe_kernels", False):  # a compiler that fails here is found before anything is written
            kernels.probe()
            self._probe_kernels = False
        early = early_directions(self.state, work)  # raises, or drops and counts, before anything is written
        for w in work:
            w.group["step"] += 1
            w.group["nonfinite_skipped"] += w.skipped
        stats = StepStats() if self.track_stats else None
        muon = [w for w in work if w.params and w.group["use_muon"]]
        if muon:
            self._muon_step(muon, stats, early)
        for w in work:
            if w.params and not w.group["use_muon"]:
                states = [self.state[p] for p in w.params]
                adamw_step(w.group, states, w.params, w.grads)
                if stats is not None and self.track_stats != "light":
                    stats.add_adamw(w.group, w.params, states)
        if stats is not None:
            self.last_stats = stats.finish()
        return loss

    def _muon_step(self, work: list, stats: StepStats | None, early: dict) -> None:
        jobs, spans = [], []
        for k, w in enumerate(work):
            states = [self.state[p] for p in w.params]
            # scratch tags by position in the step: unique within it, shared by optimizers of the same layout
            directions = rule_directions(w.group, states, w.params, w.grads, early, tag=f"direction.{k}")
            variant = VARIANTS[w.group["variant"]]
            if variant.prepare is not None:
                directions = variant.prepare(w.group, directions)
            spans.append((len(jobs), len(w.params)))
            jobs += make_jobs(w.group, states, w.params, directions, ratios=variant.transform is None)
        if stats is not None:
            stats.start_ns(jobs[0].tensor.device)
        try:
            results = self.orthogonalize(jobs)
        except NonFiniteInput as e:  # distributed backends raise it on every rank, naming the job (``e.job``)
            raise self._nonfinite_input(work, jobs, spans, getattr(e, "job", None)) from None
        if stats is not None:
            stats.stop_ns(jobs[0].tensor.device)
        for w, (start, n) in zip(work, spans):
            ortho = results[start : start + n]
            transform = VARIANTS[w.group["variant"]].transform
            if transform is not None:
                ortho = transform(w.group, [self.state[p] for p in w.params], w.params, ortho)
            scales = apply_group(w.group, w.params, ortho)
            if stats is not None:
                stats.add_muon(w.group, ortho, scales)

    def _nonfinite_input(self, work: list, jobs: list[Job], spans: list, job: int | None = None) -> FloatingPointError:
        """The error for a direction that reached orthogonalization non-finite (its state was already non-finite
        before this step, e.g. loaded so): names the first such parameter (``job``: the one the ranks agreed on,
        the same on every rank; else found here). No weight has been written."""
        if job is None:
            local = [jb.tensor.to_local() if is_dtensor(jb.tensor) else jb.tensor for jb in jobs]
            job = next((k for k, t in enumerate(local) if not bool(torch.isfinite(t).all())), None)
            where = ""
        else:
            where = " on at least one rank"
        for w, (start, n) in zip(work, spans):
            for j in range(n):
                if start + j == job:
                    p = w.params[j]
                    return FloatingPointError(
                        f"non-finite direction at orthogonalize for {label_of(w.group, w.index, p)} at optimizer "
                        f"step {w.group['step']}: its optimizer state ({', '.join(sorted(self.state[p]))}) holds NaN "
                        f"or ±inf from before this step{where}; no weight was written (this step's state updates were "
                        "applied). Reset that state (or load a finite checkpoint)."
                    )
        return FloatingPointError("non-finite direction at orthogonalize; no weight was written")

    # ------------------------------------------------------------------ introspection
    update_scale = staticmethod(update_scale)

    def describe(self) -> list[dict[str, Any]]:
        """One row per group: kind, #params, #elements, lr, effective Muon lr range."""
        rows = []
        for g in self.param_groups:
            row = dict(
                kind="muon" if g["use_muon"] else "adamw",
                params=len(g["params"]),
                numel=sum(p.numel() for p in g["params"]),
                lr=g["lr"],
                weight_decay=g["weight_decay"],
            )
            if g["use_muon"] and g["params"]:
                scales = [update_scale(p, g) for p in g["params"]]
                row["effective_lr"] = (g["lr"] * min(scales), g["lr"] * max(scales))
            rows.append(row)
        return rows


__all__ = ["Muon"]
