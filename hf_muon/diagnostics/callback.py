"""``MuonDiagnosticsCallback``: Muon health numbers through the Trainer's ``report_to`` and a JSONL file.

Every step (from :attr:`hf_muon.Muon.last_stats`): Muon update RMS (``lr·α·O``), effective lrs,
Newton-Schulz seconds and their share of the training step; AdamW's update RMS (``lr·m̂/(√v̂+ε)``, a
pass over every AdamW parameter) on the steps the Trainer logs; with ``qk_clip`` on, the QK-Clip counts of the
step (``qk_clip_heads_clipped`` of ``qk_clip_heads`` watched, and the step's ``qk_clip_max_logit`` before the
clip; :mod:`hf_muon.optim.qk_clip`).
Every ``every`` steps: SVD entropy of each Muon weight, σ-quantiles of each layer's
Frobenius-normalised momentum, and the orthogonality error of a few re-orthogonalized momenta.

Per-step and per-layer rows go to ``<output_dir>/muon_diagnostics.jsonl`` (main process); averaged
scalars are added to the Trainer's logs under ``muon/…`` so TensorBoard, W&B & co. receive them. The
callback moves itself ahead of the reporting callbacks so its keys are in the logs they see.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler

from ..ns.batching import Job, run_jobs
from ..ns.blocks import Split, blocks
from ..optim.jobs import as_matrix, ns_config
from ..optim.muon import Muon
from .spectral import (
    DEFAULT_QUANTILES,
    layer_info,
    lifted_fraction,
    normalized_quantiles,
    orthogonality_error,
    singular_values,
    svd_entropy,
)


def _unwrap(optimizer):
    while optimizer is not None and not isinstance(optimizer, Muon):
        optimizer = getattr(optimizer, "optimizer", None)
    return optimizer


class MuonDiagnosticsCallback(TrainerCallback):
    """Args:
    every: steps between spectral snapshots (SVDs); per-step numbers are always logged.
    jsonl: file name (relative to ``args.output_dir``) or absolute path; ``None`` disables the file.
    quantiles: σ-quantiles of the normalised momentum to record.
    max_matrices: cap on matrices analysed per snapshot (evenly spread over the Muon parameters).
    orth_samples: how many momenta to re-orthogonalize for the orthogonality error.
    """

    def __init__(
        self,
        every: int = 100,
        jsonl: str | None = "muon_diagnostics.jsonl",
        quantiles=DEFAULT_QUANTILES,
        max_matrices: int = 64,
        orth_samples: int = 4,
    ):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every, self.jsonl, self.quantiles = every, jsonl, tuple(quantiles)
        self.max_matrices, self.orth_samples = max_matrices, orth_samples
        self.optimizer: Muon | None = None
        self._path: Path | None = None
        self._pending: dict[str, list[float]] = {}
        self._t0 = None

    # ---------------------------------------------------------------- wiring
    def _move_ahead_of_reporters(self):
        """Put this callback right after DefaultFlowCallback so reporters see our keys in ``on_log``.

        The handler is the caller of this event; moving ourselves to an earlier index while it iterates
        is safe (nothing is skipped or called twice).
        """
        caller = sys._getframe(2).f_locals.get("self")
        if isinstance(caller, CallbackHandler) and self in caller.callbacks:
            caller.callbacks.remove(self)
            caller.callbacks.insert(min(1, len(caller.callbacks)), self)

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self._move_ahead_of_reporters()
        self.optimizer = _unwrap(optimizer)
        if self.optimizer is None:
            raise ValueError("MuonDiagnosticsCallback needs the Trainer to use hf_muon.Muon (--optim muon)")
        self.optimizer.track_stats = True
        if self.jsonl and state.is_world_process_zero:
            p = Path(self.jsonl)
            self._path = p if p.is_absolute() else Path(args.output_dir) / p
            self._path.parent.mkdir(parents=True, exist_ok=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.optimizer is not None:
            self.optimizer.track_stats = False

    def _write(self, row: dict):
        if self._path is not None:
            with open(self._path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def _add(self, key: str, value: float):
        self._pending.setdefault(key, []).append(float(value))

    # ---------------------------------------------------------------- events
    def on_step_begin(self, args, state, control, **kwargs):
        # AdamW's update RMS needs a pass over every AdamW parameter: only on steps the Trainer will log.
        if self.optimizer is not None:
            logging_steps = max(1, int(args.logging_steps) if args.logging_steps >= 1 else 1)
            logged = (state.global_step + 1) % logging_steps == 0 or state.global_step == 0
            self.optimizer.track_stats = "full" if logged else "light"
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        opt = self.optimizer
        if opt is None:
            return
        stats = dict(opt.last_stats)
        if self._t0 is not None and stats:
            step_seconds = time.perf_counter() - self._t0
            stats["step_seconds"] = step_seconds
            stats["ns_share"] = stats["ns_seconds"] / step_seconds if step_seconds > 0 else 0.0
        for k, v in stats.items():
            self._add(f"muon/{k}", v)
        self._write({"step": state.global_step, "kind": "step", **stats})
        if state.global_step % self.every == 0 or state.global_step == 1:
            t = time.perf_counter()
            summary = self.spectral_snapshot(state.global_step)
            summary["spectral_seconds"] = time.perf_counter() - t
            for k, v in summary.items():
                self._add(f"muon/{k}", v)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not self._pending:
            return
        for k, vals in self._pending.items():
            logs[k] = sum(vals) / len(vals)
        self._pending.clear()

    # ---------------------------------------------------------------- spectra
    def _muon_params(self):
        out = []
        for g in self.optimizer.param_groups:
            if not g["use_muon"]:
                continue
            names = g.get("param_names") or [f"muon.{i}" for i in range(len(g["params"]))]
            out += [(n, p, g) for n, p in zip(names, g["params"])]
        return out

    @torch.no_grad()
    def spectral_snapshot(self, step: int) -> dict:
        """Entropy, normalised-momentum σ-quantiles and orthogonality error; returns summary scalars."""
        params = self._muon_params()
        if len(params) > self.max_matrices:
            idx = torch.linspace(0, len(params) - 1, self.max_matrices).round().long().unique().tolist()
            params = [params[i] for i in idx]
        entropies, medians = [], []
        for name, p, g in params:
            depth, kind = layer_info(name)
            row = {
                "step": step,
                "kind": "layer",
                "name": name,
                "depth": depth,
                "layer_type": kind,
                "svd_entropy": svd_entropy(singular_values(p, g["experts"])),
            }
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None and bool(buf.any()):
                q = normalized_quantiles(singular_values(buf, g["experts"]), self.quantiles)
                row["momentum_sigma_quantiles"] = dict(zip(map(str, self.quantiles), q))
                medians.append(q[len(q) // 2])
            entropies.append(row["svd_entropy"])
            self._write(row)
        errors, lifted = [], []
        stride = max(1, len(params) // max(self.orth_samples, 1))
        for name, p, g in params[::stride][: self.orth_samples]:  # spread over depth and layer types
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is None or not bool(buf.any()):
                continue
            m = buf.full_tensor() if hasattr(buf, "full_tensor") else buf
            M = as_matrix(m, g)
            split = Split.from_spec(g.get("split"))
            parts = blocks(M, split) if split is not None else [M]  # a fused weight: each block on its own
            outs = run_jobs([Job(b, ns_config(g)) for b in parts])
            errors.append(max(orthogonality_error(O) for O in outs))
            lifted.append(min(lifted_fraction(O) for O in outs))
            self._write(
                {
                    "step": step,
                    "kind": "orthogonality",
                    "name": name,
                    "error": errors[-1],
                    "lifted_fraction": lifted[-1],
                }
            )
        summary = {"svd_entropy_mean": sum(entropies) / max(len(entropies), 1)}
        if medians:
            summary["momentum_sigma_q50_median"] = sorted(medians)[len(medians) // 2]
        if errors:
            summary["orthogonality_error_max"] = max(errors)
            summary["lifted_fraction_min"] = min(lifted)
        self._write({"step": step, "kind": "spectral", **summary})
        return summary
