"""``hf_muon.Muon``: one ``torch.optim.Optimizer`` holding Muon groups and AdamW groups.

Each param group carries ``use_muon``. AdamW groups run ``torch.optim.adamw.adamw`` (the functional
kernel behind ``torch.optim.AdamW``) with the same state layout, so they are bit-identical to
``torch.optim.AdamW``. Muon groups run the rule in :mod:`hf_muon.update` with orthogonalization through
the shared batching engine (:mod:`hf_muon.batching`): same-shape matrices from every Muon group are
stacked into one batched Newton-Schulz call.

Every group keeps its learning rate under ``"lr"`` (schedulers, ``AcceleratedOptimizer`` and DCP's
zero-lr fake step rely on it) and only primitives besides tensors, so ``state_dict()`` loads with
``torch.load(weights_only=True)``. Per-parameter layout facts (``transposed``, ``experts``) are group
keys, never side tables keyed by ``id(param)``, so they survive FSDP2 swapping the parameter objects.

Subclasses override :meth:`Muon.orthogonalize` (the single override point); the distributed
variants do exactly that.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adamw import adamw as _adamw_functional

from .batching import Job, NSConfig, run_jobs
from .coefficients import schedule
from .distributed.exchange import CommStats
from .fused import Split
from .ns_schedule import normalized_sigma_quantile, steps_for
from .orthogonalize import METHODS, NS_DTYPES
from .scaling import SCALE_MODES, check_lr, fan_out_in, scale_factor
from .update import apply_orthogonal_, decoupled_decay_, momentum_

NONFINITE_POLICIES = ("error", "skip")
DISTRIBUTED_MODES = ("auto", "none")
UPDATE_BASES = ("momentum", "adam")
MOMENTUM_DTYPES = (None, "float32")

_FLAT_PARAM_HINT = (
    "Muon needs whole 2-D weight matrices, but this parameter is a 1-D flat view (FSDP v1 FlatParameter or a "
    "DeepSpeed ZeRO partition). Use FSDP2 (fully_shard / accelerate `fsdp_version: 2`), or DeepSpeed's own Muon via "
    'the DeepSpeed config block "optimizer": {"type": "Muon", ...} instead of --optim muon.'
)


def _param_label(group: dict, gi: int, i: int, p: torch.Tensor) -> str:
    names = group.get("param_names")
    name = names[i] if names and i < len(names) else f"param_groups[{gi}]['params'][{i}]"
    return f"{name!r} (shape {tuple(p.shape)})"


def _is_dtensor(t: torch.Tensor) -> bool:
    return type(t).__name__ == "DTensor"


class Muon(torch.optim.Optimizer):
    """Muon for matrix weights + AdamW for everything else, in one optimizer.

    Args:
        params: parameters or param groups; build them with :func:`hf_muon.param_groups`, which routes
            each tensor and sets ``use_muon``. A group without ``use_muon`` is a Muon group.
        lr: learning rate of every group that does not set its own (Muon groups under the default
            ``moonlight`` scale take AdamW-sized lrs).
        adamw_lr: lr for AdamW groups that do not set their own (default: ``lr``).
        weight_decay: decoupled decay ``W ← W(1 − lr·λ)`` for groups that do not set their own.
        momentum, nesterov: Muon momentum (SGD-style sum, Nesterov mix; see :mod:`hf_muon.update`).
        ns_steps: Newton-Schulz iterations per Muon group, or ``"auto"`` (per matrix, the fewest steps
            that lift the ``auto_quantile`` σ-quantile of its normalised update to ``auto_target``;
            group keys ``auto_quantile``/``auto_target``/``auto_every``/``auto_min``/``auto_max``; see
            :mod:`hf_muon.ns_schedule`). Depth and regex schedules are resolved by ``param_groups``.
        coefficients: ``"polar_express"`` (default), ``"keller"`` or a list of ``(a, b, c)``.
        scale_mode: ``"moonlight"`` (0.2·√max(A,B), default), ``"keller"``, ``"mup"``, ``"none"``.
        ns_dtype: ``"auto"`` (bf16 on CUDA and on CPUs with native bf16 dot products, else fp32; see
            :func:`hf_muon.orthogonalize.resolve_dtype`) or an explicit dtype name.
        ns_method: ``"newton_schulz"`` or ``"svd"`` (exact reference, slow).
        momentum_dtype: ``None`` (param dtype) or ``"float32"`` (fp32 buffers for bf16/fp16 params).
        betas, eps: AdamW hyperparameters (torch.optim.AdamW defaults).
        fused: AdamW groups run torch's fused AdamW kernel. ``None`` (default): fused whenever the group
            allows it (floating-point tensors, DTensors included, on a device with the kernel, CPU or CUDA, and ``foreach``
            not set), else torch's foreach / single-tensor path. Fused is ~10x faster than the single-tensor
            path on CPU and equal to ``torch.optim.AdamW(fused=True)`` bit for bit. ``False``: never (equal
            to ``torch.optim.AdamW(foreach=foreach)``); ``True``: always (an error where impossible).
        foreach: as in torch.optim.AdamW, for AdamW groups that are not fused.
        nonfinite: ``"error"`` raises naming the parameter and step; ``"skip"`` skips that parameter's
            update for the step and counts it in the group's ``nonfinite_skipped``.
        batched: stack same-shape matrices into one Newton-Schulz call (default True).
        distributed: ``"auto"``: in a multi-process run, plain (replicated, DDP) parameters are
            orthogonalized once each by a FLOP-balanced owner rank and the results all-gathered, and
            DTensor (FSDP2) parameters are gathered to their owner and scattered back. ``"none"``: every
            rank orthogonalizes all its plain parameters itself (for ranks training independent models).
        process_group: group for the replicated exchange (default: WORLD).
        spectral_power: p in [0, 1]: apply ``U Σ^p Vᵀ`` instead of orthogonalizing (p = 0, Muon). For
            p > 0 the update keeps part of the input's scale, so moonlight's RMS matching only holds at
            p = 0; use ``scale_mode="none"`` and tune the lr (Delving into Muon, arXiv 2602.04669).
        update_base: ``"momentum"`` (the mSGD family: Muon at p = 0) or ``"adam"`` (the Adam family:
            ``Ψ_p`` of Adam's bias-corrected ``m̂/(√v̂+ε)``, with ``betas``/``eps``; AdamW at p = 1).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        *,
        adamw_lr: float | None = None,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        coefficients: str | list = "polar_express",
        scale_mode: str = "moonlight",
        ns_dtype: str = "auto",
        ns_method: str = "newton_schulz",
        momentum_dtype: str | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        nonfinite: str = "error",
        batched: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
        distributed: str = "auto",
        process_group=None,
        spectral_power: float = 0.0,
        update_base: str = "momentum",
    ):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            use_muon=True,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            coefficients=coefficients,
            scale_mode=scale_mode,
            ns_dtype=ns_dtype,
            ns_method=ns_method,
            momentum_dtype=momentum_dtype,
            transposed=False,
            experts=False,
            split=None,
            spectral_power=spectral_power,
            update_base=update_base,
            auto_quantile=0.5,
            auto_target=0.5,
            auto_every=100,
            auto_min=1,
            auto_max=15,
            betas=tuple(betas),
            eps=eps,
            amsgrad=False,
            maximize=False,
            foreach=foreach,
            capturable=False,
            differentiable=False,
            fused=fused,
            nonfinite=nonfinite,
            nonfinite_skipped=0,
            step=0,
        )
        self.batched = batched
        if distributed not in DISTRIBUTED_MODES:
            raise ValueError(f"distributed={distributed!r}; valid: {', '.join(DISTRIBUTED_MODES)}")
        self.distributed, self.process_group = distributed, process_group
        self.comm_stats = CommStats()
        # False, "light" (NS time, Muon update RMS, lrs: cheap) or "full" (+ AdamW update RMS, which costs a
        # pass over every AdamW parameter). MuonDiagnosticsCallback sets it per step and reads `last_stats`.
        self.track_stats: bool | str = False
        self.last_stats: dict = {}
        params = list(params)
        if params and isinstance(params[0], dict) and adamw_lr is not None:
            params = [dict(g) for g in params]
            for g in params:
                if not g.get("use_muon", True):
                    g.setdefault("lr", adamw_lr)
        super().__init__(params, defaults)  # validates each group through add_param_group
        if not any(g["use_muon"] and g["params"] for g in self.param_groups):
            raise ValueError(
                "Muon was requested but no parameter is routed to it (every group has use_muon=False or no params). "
                "Check include/exclude patterns and the routing report (hf_muon.routing_report(model))."
            )

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._validate_group(self.param_groups[-1], len(self.param_groups) - 1)

    # ------------------------------------------------------------------ validation
    def _validate_group(self, g: dict, gi: int) -> None:
        where = f"param_groups[{gi}]"
        if g["nonfinite"] not in NONFINITE_POLICIES:
            raise ValueError(f"{where}: nonfinite={g['nonfinite']!r}; valid: {', '.join(NONFINITE_POLICIES)}")
        if not g["use_muon"]:
            if g["fused"] and g["foreach"]:
                raise ValueError(f"{where}: fused=True and foreach=True cannot be set together (as in torch.optim.AdamW)")
            if g["fused"] and g["differentiable"]:
                raise ValueError(f"{where}: fused=True does not support differentiable=True")
            return
        if g["scale_mode"] not in SCALE_MODES:
            raise ValueError(f"{where}: scale_mode={g['scale_mode']!r}; valid: {', '.join(SCALE_MODES)}")
        if g["ns_dtype"] not in NS_DTYPES:
            raise ValueError(f"{where}: ns_dtype={g['ns_dtype']!r}; valid: {', '.join(NS_DTYPES)}")
        if g["ns_method"] not in METHODS:
            raise ValueError(f"{where}: ns_method={g['ns_method']!r}; valid: {', '.join(METHODS)}")
        if g["momentum_dtype"] not in MOMENTUM_DTYPES:
            raise ValueError(f"{where}: momentum_dtype={g['momentum_dtype']!r}; valid: None, 'float32'")
        if not 0.0 <= float(g["spectral_power"]) <= 1.0:
            raise ValueError(f"{where}: spectral_power={g['spectral_power']} must be in [0, 1]")
        if g["update_base"] not in UPDATE_BASES:
            raise ValueError(f"{where}: update_base={g['update_base']!r}; valid: {', '.join(UPDATE_BASES)}")
        if not 0.0 <= g["momentum"] < 1.0:
            raise ValueError(f"{where}: momentum={g['momentum']} must be in [0, 1)")
        if g["ns_steps"] == "auto":
            if not (0 < g["auto_quantile"] < 1 and 0 < g["auto_target"] <= 1 and g["auto_every"] >= 1
                    and 0 <= g["auto_min"] <= g["auto_max"]):
                raise ValueError(f"{where}: invalid auto NS settings (auto_quantile in (0,1), auto_target in (0,1], "
                                 "auto_every >= 1, 0 <= auto_min <= auto_max)")
            schedule(g["coefficients"], g["auto_max"])
        else:
            schedule(g["coefficients"], g["ns_steps"])  # raises on bad presets/lists/steps
        check_lr(g["lr"], g["scale_mode"], stacklevel=5)
        split = Split.from_spec(g["split"])
        for i, p in enumerate(g["params"]):
            self._check_matrix(g, gi, i, p)
            if split is not None:
                split.check(p.shape, _param_label(g, gi, i, p))

    @staticmethod
    def _check_matrix(g: dict, gi: int, i: int, p: torch.Tensor) -> None:
        if p.ndim < 2:
            raise ValueError(
                f"Muon group parameter {_param_label(g, gi, i, p)} is {p.ndim}-D; Muon orthogonalizes matrices only. "
                "If it is a norm/bias/scalar, route it to AdamW (hf_muon.param_groups(model) does this). If it is a "
                f"flattened 2-D weight: {_FLAT_PARAM_HINT}"
            )
        if g["experts"] and p.ndim != 3:
            raise ValueError(f"expert group parameter {_param_label(g, gi, i, p)} must be 3-D (E, out, in)")

    # ------------------------------------------------------------------ override point
    def orthogonalize(self, jobs: list[Job]) -> list[torch.Tensor]:
        """Orthogonalize every job's matrix; the single override point for subclasses.

        Sharded (DTensor) updates, and replicated ones in a multi-process run with
        ``distributed="auto"``, go through :mod:`hf_muon.distributed` (each matrix once, on its owner).
        """
        if self._use_distributed(jobs):
            from .distributed import orthogonalize_distributed

            return orthogonalize_distributed(jobs, self.process_group, self.batched, self.comm_stats)
        return run_jobs(jobs, batched=self.batched)

    def _use_distributed(self, jobs) -> bool:
        if any(_is_dtensor(j.tensor) for j in jobs):
            return True
        if self.distributed == "none" or not torch.distributed.is_available():
            return False
        return torch.distributed.is_initialized() and torch.distributed.get_world_size(self.process_group) > 1

    @staticmethod
    def _agree(flags: torch.Tensor, mesh) -> torch.Tensor:
        """Element-wise max of per-parameter flags over the ranks sharing sharded params."""
        if mesh is not None:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX, group=mesh.get_group())
        return flags

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        stats = _StepStats() if self.track_stats else None
        muon_work = []  # (group, params, updates)
        for gi, group in enumerate(self.param_groups):
            group["step"] += 1
            params, grads = self._collect(group, gi)
            if not params:
                continue
            if group["use_muon"]:
                base = self._adam_direction if group["update_base"] == "adam" else self._muon_momentum
                muon_work.append((group, params, base(group, params, grads)))
            else:
                self._adamw(group, params, grads)
                if stats is not None and self.track_stats != "light":
                    stats.add_adamw(group, params, self.state)
        if muon_work:
            jobs = [
                Job(m, self._ns_config(group, self._auto_steps(group, p, m) if group["ns_steps"] == "auto" else None, p))
                for group, params, updates in muon_work
                for p, m in zip(params, (self._as_matrix(u, group) for u in updates))
            ]
            if stats is not None:
                stats.start_ns(jobs[0].tensor.device)
            results = iter(self.orthogonalize(jobs))
            if stats is not None:
                stats.stop_ns(jobs[0].tensor.device)
            for group, params, _ in muon_work:
                ortho = [next(results) for _ in params]
                decoupled_decay_(params, group["lr"], group["weight_decay"])
                scales = [self.update_scale(p, group) for p in params]
                if stats is not None:
                    stats.add_muon(group, ortho, scales)
                apply_orthogonal_(params, ortho, group["lr"], scales)
        if stats is not None:
            self.last_stats = stats.finish()
        return loss

    def _collect(self, group: dict, gi: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params, grads = [], []
        for i, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"hf_muon.Muon does not support sparse gradients ({_param_label(group, gi, i, p)})")
            params.append(p)
            grads.append(p.grad)
        if not grads:
            return params, grads
        # Cheap screen: a NaN/±inf anywhere makes the fp32 sum non-finite (one sync per group). Only
        # when it trips do we pay for the exact per-element check (an overflowing sum alone is not an error).
        # Sharded (DTensor) grads are screened on local shards and the verdict agreed across ranks.
        local = [g.to_local() if _is_dtensor(g) else g for g in grads]
        mesh = next((g.device_mesh for g in grads if _is_dtensor(g)), None)
        flags = (~torch.stack([g.sum(dtype=torch.float32) for g in local]).isfinite()).to(torch.float32)
        flags = self._agree(flags, mesh)
        if not bool(flags.any()):
            return params, grads
        exact = torch.tensor([0.0 if not f or bool(torch.isfinite(g).all()) else 1.0 for f, g in zip(flags, local)])
        bad = self._agree(exact.to(flags.device), mesh).nonzero().flatten().tolist()
        if not bad:
            return params, grads
        if group["nonfinite"] == "error":
            p = params[bad[0]]
            i = next(k for k, q in enumerate(group["params"]) if q is p)
            raise FloatingPointError(
                f"non-finite gradient in {_param_label(group, gi, i, p)} at optimizer step {group['step']} "
                f"({len(bad)} parameter(s) of this group affected). Lower the lr, enable gradient clipping, or pass "
                "nonfinite='skip' to skip and count such updates."
            )
        group["nonfinite_skipped"] += len(bad)
        keep = [k for k in range(len(params)) if k not in set(bad)]
        return [params[k] for k in keep], [grads[k] for k in keep]

    def _muon_momentum(self, group: dict, params: list, grads: list) -> list[torch.Tensor]:
        for p in params:  # a backend may have swapped in flat 1-D views after construction (DeepSpeed ZeRO)
            if p.ndim < 2 or getattr(p, "_is_flat_param", False):
                i = next(k for k, q in enumerate(group["params"]) if q is p)
                raise ValueError(f"Muon parameter {_param_label(group, self.param_groups.index(group), i, p)} "
                                 f"became a flat {p.ndim}-D view at step {group['step']}. {_FLAT_PARAM_HINT}")
        mdtype = torch.float32 if group["momentum_dtype"] == "float32" else None
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, dtype=mdtype or p.dtype, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        return momentum_(bufs, grads, group["momentum"], group["nesterov"])

    def _adam_direction(self, group: dict, params: list, grads: list) -> list[torch.Tensor]:
        """Adam's bias-corrected ``m̂/(√v̂ + ε)`` (the Adam family of the spectral family)."""
        beta1, beta2 = group["betas"]
        out = []
        for p, g in zip(params, grads):
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            t = float(state["step"])
            state["exp_avg"].lerp_(g, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(group["eps"])
            out.append(state["exp_avg"] / (1 - beta1**t) / denom)
        return out

    @staticmethod
    def _as_matrix(u: torch.Tensor, group: dict) -> torch.Tensor:
        if u.ndim == 2 or (group["experts"] and u.ndim == 3):
            return u
        return u.reshape(u.size(0), -1)  # conv (out, in, k...) -> (out, in*k*k)

    @staticmethod
    def _ns_config(group: dict, steps: int | None = None, p: torch.Tensor | None = None) -> NSConfig:
        """NS settings of a group; with ``p`` and a fused-projection split, also the block split and each block's
        scale relative to the whole matrix's (so the optimizer applies one scale per parameter)."""
        if steps is None:
            steps = group["ns_steps"] if group["ns_steps"] != "auto" else group["auto_max"]
        split = Split.from_spec(group["split"]) if p is not None else None
        ratios = (_block_ratios(tuple(p.shape), split, group["transposed"], group["experts"], group["scale_mode"])
                  if split is not None else None)
        return NSConfig(steps, group["coefficients"], group["ns_dtype"], group["ns_method"],
                        float(group["spectral_power"]), split, ratios)

    def _auto_steps(self, group: dict, p: torch.Tensor, matrix: torch.Tensor) -> int:
        """Per-matrix steps for ``ns_steps="auto"``, re-estimated every ``auto_every`` steps."""
        state = self.state[p]
        if "ns_steps" not in state or (group["step"] - 1) % group["auto_every"] == 0:
            full = matrix.full_tensor() if _is_dtensor(matrix) else matrix
            sigma = normalized_sigma_quantile(full, group["auto_quantile"])
            steps = steps_for(sigma, group["coefficients"], group["auto_target"], group["auto_min"], group["auto_max"])
            state["ns_steps"] = torch.tensor(steps, dtype=torch.int64)
        return int(state["ns_steps"])

    @staticmethod
    def update_scale(p: torch.Tensor, group: dict) -> float:
        """α for this parameter under its group's scale mode (orientation-aware)."""
        d_out, d_in = fan_out_in(p.shape, group["transposed"], group["experts"])
        return scale_factor(d_out, d_in, group["scale_mode"])

    def _adamw(self, group: dict, params: list, grads: list) -> None:
        fused = group["fused"]
        if fused is None:
            fused = group["foreach"] is None and _fusable(group, params, grads)
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                on_device = group["capturable"] or fused
                state["step"] = (
                    torch.zeros((), dtype=torch.float32, device=p.device)
                    if on_device
                    else torch.tensor(0.0, dtype=_scalar_dtype())
                )
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif fused and state["step"].device != p.device:
                # the fused kernel keeps the step count beside the parameter (a state loaded from an unfused run
                # or from another device has it on the CPU)
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        _adamw_functional(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            foreach=group["foreach"],
            capturable=group["capturable"],
            differentiable=group["differentiable"],
            fused=fused,
            grad_scale=None,
            found_inf=None,
            has_complex=any(torch.is_complex(p) for p in params),
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )

    # ------------------------------------------------------------------ introspection
    def describe(self) -> list[dict[str, Any]]:
        """One row per group: kind, #params, #elements, lr, effective Muon lr range."""
        rows = []
        for g in self.param_groups:
            row = dict(kind="muon" if g["use_muon"] else "adamw", params=len(g["params"]),
                       numel=sum(p.numel() for p in g["params"]), lr=g["lr"], weight_decay=g["weight_decay"])
            if g["use_muon"] and g["params"]:
                scales = [self.update_scale(p, g) for p in g["params"]]
                row["effective_lr"] = (g["lr"] * min(scales), g["lr"] * max(scales))
            rows.append(row)
        return rows


class _StepStats:
    """Per-step numbers for diagnostics (only built when ``track_stats`` is on).

    Update RMS excludes weight decay: Muon ``lr·α·O``, AdamW ``lr·m̂/(√v̂ + ε)``.
    """

    def __init__(self):
        self.t0 = time.perf_counter()
        self.ns_seconds = 0.0
        self.sq = {"muon": 0.0, "adamw": 0.0}
        self.numel = {"muon": 0, "adamw": 0}
        self.lr = {"muon": [], "adamw": []}

    @staticmethod
    def _sync(device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def start_ns(self, device):
        self._sync(device)
        self._ns0 = time.perf_counter()

    def stop_ns(self, device):
        self._sync(device)
        self.ns_seconds += time.perf_counter() - self._ns0

    def add_muon(self, group, ortho, scales):
        norms = torch.stack(torch._foreach_norm([o.float() for o in ortho])).double()
        coef = torch.tensor(scales, dtype=torch.float64, device=norms.device) * group["lr"]
        self.sq["muon"] += float(((norms * coef) ** 2).sum())
        self.numel["muon"] += sum(o.numel() for o in ortho)
        self.lr["muon"] += [group["lr"] * min(scales), group["lr"] * max(scales)]

    def add_adamw(self, group, params, state):
        beta1, beta2 = group["betas"]
        for p in params:
            st = state[p]
            step = float(st["step"])
            m = st["exp_avg"].float() / (1 - beta1**step)
            v = st["exp_avg_sq"].float() / (1 - beta2**step)
            self.sq["adamw"] += float((group["lr"] * m / (v.sqrt() + group["eps"])).pow(2).sum())
            self.numel["adamw"] += p.numel()
        self.lr["adamw"].append(group["lr"])

    def finish(self) -> dict:
        out = {"optimizer_seconds": time.perf_counter() - self.t0, "ns_seconds": self.ns_seconds}
        for kind in ("muon", "adamw"):
            if self.numel[kind]:
                out[f"update_rms_{kind}"] = (self.sq[kind] / self.numel[kind]) ** 0.5
                out[f"lr_{kind}_min"], out[f"lr_{kind}_max"] = min(self.lr[kind]), max(self.lr[kind])
        return out


@functools.lru_cache(maxsize=256)
def _block_ratios(shape: tuple, split: Split, transposed: bool, experts: bool, mode: str) -> tuple[float, ...]:
    """Each block's scale factor over the whole fused matrix's (moonlight: √(max dims of block / of whole))."""
    whole = scale_factor(*fan_out_in(shape, transposed, experts), mode)
    return tuple(scale_factor(*fan_out_in(b, transposed, experts), mode) / whole for b in split.block_shapes(shape))


def _fusable(group: dict, params: list, grads: list) -> bool:
    """Whether torch's fused AdamW kernel can take this group: real floating-point tensors (plain or DTensor:
    FSDP2 and DDP then run the same kernel), grads of the parameters' dtype, on devices that have the kernel."""
    if group["differentiable"]:
        return False
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = _get_fused_kernels_supported_devices()
    for p, g in zip(params, grads):
        if p.device.type not in devices or not p.is_floating_point() or g.dtype != p.dtype or g.device != p.device:
            return False
    return True


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


__all__ = ["Muon", "NONFINITE_POLICIES"]
