#!/usr/bin/env python
"""Spectral scaling laws of Muon at CPU scale, and the NS-schedule benchmark.

Usage::

    python recipes/spectral_laws/run.py recipes/spectral_laws/config.yaml [--out DIR]

Part 1 (arXiv 2606.04058, guide §2): a ladder of Llama sizes trained with Muon on real mirror text.
Every ``record_every`` steps the singular values of each tracked momentum buffer ``M`` are taken, and
the quantiles (0.1 … 0.9) of ``σ(M)/‖M‖_F`` are stored per layer type (q, k, v, o, gate, up, down) and
relative depth (N/4, N/2, 3N/4, N). After burn-in the last ``average_last`` records are averaged and
``log σ_q = c + α log M`` is fitted over the ladder per (type, depth, q). M is the non-embedding
parameter count unless ``spectra.size_measure: total``.

Part 2 (NS schedule benchmark): on one width, the same training with uniform 5, uniform 10, a depth
schedule ("last1:10") and ``"auto"`` Newton-Schulz steps. Per schedule: NS FLOPs per optimizer step
(Σ over Muon matrices of ``steps·(4m²n + 2m³)``; for auto, the steps actually in use, averaged over
training), orthogonalization quality on the trained model's momentum buffers (share of singular values
of the NS output ≥ 0.5 and ``‖OOᵀ − I‖_F/√m``, fp32 NS) and the final validation loss. The target
"auto matches uniform-10 quality at ≤ 0.7× its NS FLOPs" is printed as MET / NOT MET with its numbers.

Each training run writes ``<out>/runs/<id>.json``; re-running skips finished runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hf_muon.diagnostics.spectral import (
    layer_info,
    lifted_fraction,
    normalized_quantiles,
    orthogonality_error,
)
from hf_muon.lab import research as R
from hf_muon.lab.models import build_llama, param_counts
from hf_muon.ns.newton_schulz import newton_schulz
from hf_muon.ns.schedule import (
    lift_threshold,
    normalized_sigma_quantile,
    parse_schedule,
    resolve_steps,
    steps_for,
)

TYPES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
         "down_proj": "down"}
TYPE_ORDER = ["q", "k", "v", "o", "gate", "up", "down"]
DEPTH_LABELS = {0.25: "N/4", 0.5: "N/2", 0.75: "3N/4", 1.0: "N"}

# Paper exponents (guide §2, source ii; the paper writes σ ∝ M^-α, here as the signed slope).
PAPER_SLOPE = {
    ("q", "N"): -0.46, ("k", "N"): -0.38, ("v", "N"): -0.58, ("o", "N"): -0.66,
    ("down", "N"): -0.52, ("up", "N"): -0.96,
}
PAPER_MID = -0.25  # Q/K/V/O at N/4, 2N/4 (~0.25) and 3N/4 (~0.25-0.27)

DEFAULTS = {
    "name": "spectral_laws",
    "data": dict(R.DATA_DEFAULTS),
    "model": {"layers": 4, "head_dim": 32, "mlp_ratio": 8 / 3, "tie_word_embeddings": True,
              "widths": [64, 128, 256, 384, 512]},
    "train": dict(R.TRAIN_DEFAULTS),
    "optimizer": dict(R.OPTIM_DEFAULTS),
    "spectra": {"record_every": 10, "burn_in": 100, "average_last": 5, "quantiles": [0.1, 0.25, 0.5, 0.75, 0.9],
                "depths": [0.25, 0.5, 0.75, 1.0], "size_measure": "non_embedding"},
    "ns_benchmark": {"enabled": True, "width": 256, "schedules": {}, "lift_threshold": 0.5, "auto_quantile": 0.5,
                     "auto_target": 0.5, "auto_min": 1, "auto_max": 15, "target_flops_ratio": 0.7,
                     "quality_tolerance": 0.02, "orth_tolerance": 0.05, "loss_tolerance": 0.02},
    "throughput_gflops": R.DEFAULT_THROUGHPUT_GFLOPS,
    "ns_throughput_gflops": R.DEFAULT_NS_THROUGHPUT_GFLOPS,
    "threads": None,  # torch threads (null: torch's default)
}
DEFAULT_SCHEDULES = {"uniform5": 5, "uniform10": 10, "depth_last1_10": "last1:10", "auto": "auto"}


def depth_index(frac: float, layers: int) -> int:
    """Layer index of relative depth ``frac`` (N/4 of 8 layers is layer 2, i.e. index 1)."""
    return max(0, min(layers - 1, math.ceil(frac * layers - 1e-9) - 1))


def depth_label(frac: float) -> str:
    return DEPTH_LABELS.get(float(frac), f"{frac:g}N")


def tracked_matrices(opt, layers: int, depths) -> list[tuple[str, str, str, torch.Tensor]]:
    """(type, depth label, name, param) for every tracked Muon matrix."""
    by_index: dict[int, list[str]] = {}
    for f in depths:
        by_index.setdefault(depth_index(f, layers), []).append(depth_label(f))
    out = []
    for name, p, _ in R.muon_params(opt):
        depth, kind = layer_info(name)
        if kind in TYPES and depth in by_index:
            out += [(TYPES[kind], label, name, p) for label in by_index[depth]]
    return out


@torch.no_grad()
def gram_singular_values(M: torch.Tensor) -> torch.Tensor:
    """Singular values of ``M`` from the float64 eigenvalues of its small-side Gram matrix (several times
    cheaper than an SVD of a wide matrix; float64 keeps the small ones accurate to ~1e-8·σ_max)."""
    X = M.detach().to(torch.float64)
    if X.shape[-2] > X.shape[-1]:
        X = X.mT
    return torch.linalg.eigvalsh(X @ X.mT).clamp_min(0.0).sqrt().flip(-1)


class SpectraRecorder:
    """σ-quantiles of the Frobenius-normalised momentum of the tracked matrices every ``every`` steps."""

    def __init__(self, tracked, every: int, quantiles):
        self.tracked, self.every, self.quantiles = tracked, int(every), [float(q) for q in quantiles]
        self.records: list[dict] = []

    def __call__(self, step, model, opt, loss):
        if step % self.every:
            return
        cache: dict[int, list[float]] = {}
        rec = {"step": step, "q": {}}
        for kind, label, _, p in self.tracked:
            if id(p) not in cache:
                cache[id(p)] = normalized_quantiles(gram_singular_values(opt.state[p]["momentum_buffer"]), self.quantiles)
            rec["q"][f"{kind}@{label}"] = cache[id(p)]
        self.records.append(rec)


class FlopMeter:
    """NS FLOPs per optimizer step (the steps actually in use, so ``"auto"`` is measured, not assumed)."""

    def __init__(self):
        self.total, self.n = 0, 0

    def __call__(self, step, model, opt, loss):
        self.total += R.optimizer_ns_flops(opt)
        self.n += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


def split_schedule(spec, bench: dict) -> tuple[object, dict | None]:
    """(``ns_steps`` spec, auto-rule settings or None) of one benchmark schedule.

    ``"auto"`` uses the ``ns_benchmark`` section's ``auto_*`` settings; ``{"auto": {"auto_quantile": …}}`` is an
    auto variant with its own settings (the rest from the section).
    """
    if isinstance(spec, dict) and set(spec) == {"auto"}:
        bad = sorted(set(spec["auto"]) - set(R.AUTO_KEYS))
        if bad:
            raise ValueError(f"ns_benchmark.schedules: unknown auto setting(s) {bad}; valid: {', '.join(R.AUTO_KEYS)}")
        return "auto", {**{k: bench[k] for k in R.AUTO_KEYS}, **spec["auto"]}
    parsed = parse_schedule(spec)
    return parsed, ({k: bench[k] for k in R.AUTO_KEYS} if parsed == "auto" else None)


def schedule_steps(spec, name: str, M: torch.Tensor, layers: int, bench: dict, coefficients) -> int:
    """NS steps a schedule gives one matrix (auto: the optimizer's rule on this momentum)."""
    spec, auto = split_schedule(spec, bench)
    if auto is not None:
        sigma = normalized_sigma_quantile(M, float(auto["auto_quantile"]))
        return steps_for(sigma, coefficients, float(auto["auto_target"]), int(auto["auto_min"]), int(auto["auto_max"]))
    return int(resolve_steps(spec, name, layer_info(name)[0], layers))


@torch.no_grad()
def ns_quality(opt, layers: int, schedules: dict, bench: dict, coefficients) -> dict:
    """Per schedule: quality of fp32 NS on this optimizer's momentum buffers, and its NS FLOPs."""
    mats = [(name, opt.state[p]["momentum_buffer"].detach().float()) for name, p, _ in R.muon_params(opt)
            if "momentum_buffer" in opt.state.get(p, {})]
    out = {}
    for sname, spec in schedules.items():
        lifted, orth, flops, steps_used, per_type = [], [], 0, [], {}
        for name, M in mats:
            s = schedule_steps(spec, name, M, layers, bench, coefficients)
            O = newton_schulz(M, steps=s, coefficients=coefficients, dtype="float32")
            lf, oe = lifted_fraction(O, float(bench["lift_threshold"])), orthogonality_error(O)
            lifted.append(lf)
            orth.append(oe)
            flops += R.ns_flops(M.shape, s)
            steps_used.append(s)
            kind = TYPES.get(layer_info(name)[1], layer_info(name)[1])
            per_type.setdefault(kind, []).append(lf)
        out[sname] = {
            "lifted_fraction": sum(lifted) / len(lifted),
            "orthogonality_error": sum(orth) / len(orth),
            "ns_flops": flops,
            "steps_mean": sum(steps_used) / len(steps_used),
            "steps_min": min(steps_used),
            "steps_max": max(steps_used),
            "lifted_by_type": {k: sum(v) / len(v) for k, v in per_type.items()},
        }
    return out


# ---------------------------------------------------------------------------------------------- runs
def build_model(cfg: dict, width: int, vocab: int):
    m = cfg["model"]
    return build_llama(width, int(m["layers"]), vocab, int(cfg["data"]["block_size"]), head_dim=int(m["head_dim"]),
                       mlp_ratio=float(m["mlp_ratio"]), tie_word_embeddings=bool(m["tie_word_embeddings"]),
                       seed=int(cfg["train"]["seed"]))


def plan(cfg: dict) -> list[dict]:
    """Every training run: the ladder, then the NS-benchmark schedules not already covered by it."""
    runs = []
    base_steps = cfg["optimizer"]["ns_steps"]
    bench = cfg["ns_benchmark"]
    schedules = bench["schedules"] or DEFAULT_SCHEDULES
    bench_width = int(bench["width"]) if bench["enabled"] else None
    for w in cfg["model"]["widths"]:
        runs.append({"run_id": f"ladder_w{w}", "width": int(w), "ns_steps": base_steps, "record": True,
                     "quality": schedules if w == bench_width else None})
    if bench_width is not None:
        for sname, spec in schedules.items():
            steps, auto = split_schedule(spec, bench)
            if bench_width in cfg["model"]["widths"] and steps == parse_schedule(base_steps):
                continue  # the ladder run at this width is this schedule's run
            run = {"run_id": f"ns_{sname}_w{bench_width}", "width": bench_width, "ns_steps": steps,
                   "record": False, "quality": schedules}
            if isinstance(spec, dict):  # an auto variant: its settings are part of the run
                run["auto"] = auto
            runs.append(run)
    return runs


def run_spec(cfg: dict, run: dict) -> dict:
    opt = dict(cfg["optimizer"], ns_steps=run["ns_steps"])
    spec = {"recipe": "spectral_laws", "width": run["width"], "ns_steps": run["ns_steps"], "data": cfg["data"],
            "model": {k: v for k, v in cfg["model"].items() if k != "widths"}, "train": cfg["train"],
            "optimizer": opt, "record": run["record"]}
    if run["record"]:
        spec["spectra"] = {k: cfg["spectra"][k] for k in ("record_every", "quantiles", "depths")}
    if run.get("auto"):
        spec["auto"] = run["auto"]
    if run["quality"]:
        spec["quality"] = {"schedules": run["quality"], **{k: v for k, v in cfg["ns_benchmark"].items()
                                                           if k in ("lift_threshold", "auto_quantile", "auto_target",
                                                                    "auto_min", "auto_max")}}
    return spec


def execute(cfg: dict, data: R.LMData, run: dict) -> dict:
    model = build_model(cfg, run["width"], data.vocab_size)
    ocfg = dict(cfg["optimizer"], ns_steps=run["ns_steps"])
    if run["ns_steps"] == "auto":  # train with the same rule the quality measurement applies
        ocfg.update(run.get("auto") or {k: cfg["ns_benchmark"][k] for k in R.AUTO_KEYS})
    opt = R.build_optimizer(model, ocfg)
    layers = int(cfg["model"]["layers"])
    hooks = [FlopMeter()]
    rec = None
    if run["record"]:
        rec = SpectraRecorder(tracked_matrices(opt, layers, cfg["spectra"]["depths"]), cfg["spectra"]["record_every"],
                              cfg["spectra"]["quantiles"])
        hooks.append(rec)

    def on_step(*a):
        for h in hooks:
            h(*a)

    res = R.train(model, opt, data, cfg["train"], on_step=on_step, desc=run["run_id"])
    res["params"] = param_counts(model)
    res["ns_flops_per_step"] = hooks[0].mean
    res["ns_flops_per_step_final"] = R.optimizer_ns_flops(opt)
    res["records"] = rec.records if rec else []
    if run["ns_steps"] == "auto":
        res["auto_steps_final"] = {n: R.current_ns_steps(opt, p, g) for n, p, g in R.muon_params(opt)}
    if run["quality"] and not res["diverged"]:
        res["quality"] = ns_quality(opt, layers, run["quality"], cfg["ns_benchmark"], ocfg["coefficients"])
    return res


def estimate(cfg: dict, runs: list[dict], vocab: int) -> dict:
    """Planned FLOPs (training + NS at the schedule's nominal steps; auto counted at 5) and minutes."""
    t = cfg["train"]
    tokens = int(t["steps"]) * int(t["batch_size"]) * int(cfg["data"]["block_size"])
    train, ns_total = 0.0, 0.0
    for run in runs:
        with torch.device("meta"):
            model = build_model(cfg, run["width"], vocab)
        spec = 5 if run["ns_steps"] == "auto" else run["ns_steps"]
        ns = sum(R.ns_flops(p.shape, resolve_steps(spec, n, layer_info(n)[0], int(cfg["model"]["layers"])))
                 for n, p in model.named_parameters() if layer_info(n)[1] in TYPES)
        train += R.train_flops(model, tokens, int(cfg["data"]["block_size"]))
        ns_total += ns * int(t["steps"])
    return R.time_estimate(train, ns_total, cfg, runs=len(runs))


# ------------------------------------------------------------------------------------------ analysis
def averaged_quantiles(res: dict, spectra: dict) -> dict[str, list[float]]:
    recs = [r for r in res["records"] if r["step"] >= int(spectra["burn_in"])][-int(spectra["average_last"]) :]
    if not recs:
        recs = res["records"][-int(spectra["average_last"]) :]
    keys = recs[0]["q"].keys() if recs else []
    return {k: [sum(r["q"][k][i] for r in recs) / len(recs) for i in range(len(recs[0]["q"][k]))] for k in keys}


def analyse(cfg: dict, results: dict[str, dict]) -> dict:
    spectra = cfg["spectra"]
    qs = [float(q) for q in spectra["quantiles"]]
    labels = list(dict.fromkeys(depth_label(f) for f in spectra["depths"]))
    ladder = []
    for w in cfg["model"]["widths"]:
        res = results.get(f"ladder_w{w}")
        if res is None or res["diverged"] or not res["records"]:
            continue
        ladder.append({"width": int(w), "size": res["params"][spectra["size_measure"]], "params": res["params"],
                       "final_val_loss": res["final_val_loss"], "sigma": averaged_quantiles(res, spectra)})
    fits: dict[str, dict] = {}
    if len(ladder) >= 2:
        for kind in TYPE_ORDER:
            for label in labels:
                key = f"{kind}@{label}"
                if key not in ladder[0]["sigma"]:
                    continue
                per_q = {}
                for i, q in enumerate(qs):
                    per_q[f"{q:g}"] = R.fit_power_law([r["size"] for r in ladder], [r["sigma"][key][i] for r in ladder])
                alphas = [f["alpha"] for f in per_q.values()]
                fits[key] = {"type": kind, "depth": label, "per_quantile": per_q,
                             "alpha_median_q": per_q.get("0.5", next(iter(per_q.values())))["alpha"],
                             "alpha_mean_q": sum(alphas) / len(alphas), "alpha_spread_q": max(alphas) - min(alphas)}
    comparison = []
    for kind in TYPE_ORDER:
        row = {"type": kind}
        for label in labels:
            row[label] = fits.get(f"{kind}@{label}", {}).get("alpha_median_q")
        mids = [row[lb] for lb in labels if lb != "N" and row.get(lb) is not None]
        row["mid_mean"] = sum(mids) / len(mids) if mids else None
        row["paper_N"] = PAPER_SLOPE.get((kind, "N"))
        row["paper_mid"] = PAPER_MID if kind in ("q", "k", "v", "o") else None
        final = row.get("N")
        row["final_steeper"] = (final is not None and row["mid_mean"] is not None and final < row["mid_mean"] - 0.05)
        comparison.append(row)
    return {"ladder": ladder, "fits": fits, "comparison": comparison, "labels": labels}


def judge(a: dict, b: dict, bench: dict, name: str) -> dict | None:
    """Does schedule row ``a`` match uniform-10's row ``b`` (lifted share, ‖OOᵀ−I‖, final loss within the
    config's tolerances) at ≤ ``target_flops_ratio`` of its NS FLOPs?"""
    if not (a["ns_flops_per_step"] and b["ns_flops_per_step"]):
        return None
    ratio = a["ns_flops_per_step"] / b["ns_flops_per_step"]
    lifted_ok = (a["lifted_fraction"] is not None and b["lifted_fraction"] is not None
                 and a["lifted_fraction"] >= b["lifted_fraction"] - float(bench["quality_tolerance"]))
    loss_ok = (a["final_val_loss"] is not None and b["final_val_loss"] is not None
               and a["final_val_loss"] <= b["final_val_loss"] + float(bench["loss_tolerance"]))
    orth_ok = (a["orthogonality_error"] is not None and b["orthogonality_error"] is not None
               and a["orthogonality_error"] <= b["orthogonality_error"] + float(bench["orth_tolerance"]))
    flops_ok = ratio <= float(bench["target_flops_ratio"])
    met = bool(lifted_ok and orth_ok and loss_ok and flops_ok)
    return {
        "met": met, "flops_ratio": ratio, "flops_ok": flops_ok, "lifted_ok": lifted_ok, "orth_ok": orth_ok,
        "loss_ok": loss_ok,
        "text": (f"Target '{name} matches uniform-10 quality at <= {bench['target_flops_ratio']}x its NS FLOPs': "
                 f"{'MET' if met else 'NOT MET'} — NS FLOPs ratio {ratio:.3f}x ({'ok' if flops_ok else 'too high'}); "
                 f"lifted fraction {R.fmt(a['lifted_fraction'])} vs {R.fmt(b['lifted_fraction'])} "
                 f"(tolerance {bench['quality_tolerance']}: {'ok' if lifted_ok else 'short'}); "
                 f"||OO^T-I|| {R.fmt(a['orthogonality_error'])} vs {R.fmt(b['orthogonality_error'])} "
                 f"(tolerance {bench['orth_tolerance']}: {'ok' if orth_ok else 'worse'}); "
                 f"final val loss {R.fmt(a['final_val_loss'])} vs {R.fmt(b['final_val_loss'])} "
                 f"(tolerance {bench['loss_tolerance']}: {'ok' if loss_ok else 'worse'})"),
    }


def ns_benchmark_summary(cfg: dict, results: dict[str, dict]) -> dict | None:
    bench = cfg["ns_benchmark"]
    if not bench["enabled"]:
        return None
    w = int(bench["width"])
    schedules = bench["schedules"] or DEFAULT_SCHEDULES
    base = cfg["optimizer"]["ns_steps"]
    rows = {}
    kinds = {n: split_schedule(sp, bench) for n, sp in schedules.items()}
    for sname, spec in schedules.items():
        rid = (f"ladder_w{w}" if w in cfg["model"]["widths"] and kinds[sname][0] == parse_schedule(base)
               else f"ns_{sname}_w{w}")
        res = results.get(rid)
        if res is None:
            continue
        q = (res.get("quality") or {}).get(sname, {})
        rows[sname] = {"run_id": rid, "schedule": spec, "final_val_loss": res["final_val_loss"],
                       "diverged": res["diverged"], "ns_flops_per_step": res["ns_flops_per_step"],
                       "lifted_fraction": q.get("lifted_fraction"), "orthogonality_error": q.get("orthogonality_error"),
                       "steps_mean": q.get("steps_mean"), "steps_min": q.get("steps_min"), "steps_max": q.get("steps_max"),
                       "quality_all": res.get("quality")}
    names = list(rows)
    # the target is judged on the first plain "auto" schedule (the pre-registered rule); variants are reported beside
    auto = next((n for n in names if schedules[n] == "auto"), None)
    u10 = next((n for n in names if kinds[n][0] == 10), None)
    target = judge(rows[auto], rows[u10], bench, auto) if auto and u10 else None
    variants = {n: judge(rows[n], rows[u10], bench, n) for n in names
                if u10 and n != auto and kinds[n][1] is not None}
    cross = None
    ref = next((n for n in names if kinds[n][0] == parse_schedule(base)), None)
    if ref and rows[ref]["quality_all"]:
        cross = {"momenta_of": rows[ref]["run_id"], "quality": rows[ref]["quality_all"]}
    return {"width": w, "rows": rows, "target": target, "variants": variants, "cross": cross, "u10": u10, "auto": auto}


# ---------------------------------------------------------------------------------------------- plots
def plots(cfg: dict, an: dict, bench: dict | None, results: dict, out: Path) -> list[str]:
    plt = R.plt()
    if plt is None:
        return []
    made = []
    labels = an["labels"]
    colors = dict(zip(labels, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]))
    ladder = an["ladder"]
    qi = [float(q) for q in cfg["spectra"]["quantiles"]].index(0.5) if 0.5 in cfg["spectra"]["quantiles"] else 0
    if len(ladder) >= 2 and an["fits"]:
        fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharex=True)
        sizes = [r["size"] for r in ladder]
        xs = torch.logspace(math.log10(min(sizes)), math.log10(max(sizes)), 20).tolist()
        for ax, kind in zip(axes.flat, TYPE_ORDER):
            for label in labels:
                key = f"{kind}@{label}"
                if key not in an["fits"]:
                    continue
                ys = [r["sigma"][key][qi] for r in ladder]
                fit = an["fits"][key]["per_quantile"][f"{float(cfg['spectra']['quantiles'][qi]):g}"]
                ax.loglog(sizes, ys, "o", color=colors[label])
                ax.loglog(xs, [math.exp(fit["c"]) * x ** fit["alpha"] for x in xs], "-", color=colors[label],
                          label=f"{label}: α={fit['alpha']:+.2f}")
            ax.set_title(kind)
            ax.legend(fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
        axes.flat[-1].axis("off")
        axes.flat[-1].text(0.0, 0.5, f"σ_0.5 of M/‖M‖_F vs {cfg['spectra']['size_measure']} params\n"
                           "points: ladder; lines: fit log σ = c + α log M\n"
                           "α = −0.25: unchanged spectrum shape (σ ∝ 1/√width)", fontsize=10)
        for ax in axes[1]:
            ax.set_xlabel(f"{cfg['spectra']['size_measure']} parameters")
        for ax in axes[:, 0]:
            ax.set_ylabel("σ_0.5 (normalised)")
        fig.suptitle("Spectral scaling of the Muon momentum (median normalised singular value)")
        fig.tight_layout()
        fig.savefig(out / "sigma_median_vs_size.png", dpi=110)
        plt.close(fig)
        made.append("sigma_median_vs_size.png")

        fig, ax = plt.subplots(figsize=(7, 4.5))
        mat = [[an["fits"].get(f"{k}@{lb}", {}).get("alpha_median_q", float("nan")) for lb in labels] for k in TYPE_ORDER]
        im = ax.imshow(mat, cmap="viridis_r", aspect="auto")
        for i, row in enumerate(mat):
            for j, v in enumerate(row):
                paper = PAPER_SLOPE.get((TYPE_ORDER[i], labels[j]))
                ax.text(j, i, f"{v:+.2f}" + (f"\n(paper {paper:+.2f})" if paper is not None else ""), ha="center",
                        va="center", color="k" if im.norm(v) < 0.4 else "w", fontsize=8)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(TYPE_ORDER)), TYPE_ORDER)
        ax.set_title("fitted exponent α of σ_0.5 ∝ M^α")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "exponents.png", dpi=110)
        plt.close(fig)
        made.append("exponents.png")

    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.6), sharey=True, squeeze=False)
    for ax, label in zip(axes[0], labels):
        for w in cfg["model"]["widths"]:
            res = results.get(f"ladder_w{w}")
            if not res or not res["records"]:
                continue
            steps = [r["step"] for r in res["records"]]
            vals = [sum(r["q"][f"{k}@{label}"][qi] for k in TYPE_ORDER) / len(TYPE_ORDER) for r in res["records"]]
            ax.semilogy(steps, vals, label=f"d={w}")
        ax.axvline(int(cfg["spectra"]["burn_in"]), color="k", ls=":", lw=1)
        ax.set_title(f"depth {label}")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("σ_0.5 (mean over layer types)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("burn-in: σ_0.5 during training (dotted: start of the averaging window)")
    fig.tight_layout()
    fig.savefig(out / "burn_in.png", dpi=110)
    plt.close(fig)
    made.append("burn_in.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for w in cfg["model"]["widths"]:
        res = results.get(f"ladder_w{w}")
        if res and res["val_curve"]:
            ax.plot([s for s, _ in res["train_curve"]], [v for _, v in res["train_curve"]], lw=1, label=f"d={w} train")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    made.append("loss_curves.png")

    if bench and bench["rows"]:
        names = list(bench["rows"])
        rows = [bench["rows"][n] for n in names]
        u10 = bench["rows"].get(bench["u10"]) if bench["u10"] else None
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        ref = (u10 or rows[0])["ns_flops_per_step"] or 1
        axes[0].bar(names, [(r["ns_flops_per_step"] or 0) / ref for r in rows])
        axes[0].axhline(float(cfg["ns_benchmark"]["target_flops_ratio"]), color="r", ls="--", lw=1)
        axes[0].set_title("NS FLOPs / step (× uniform-10)")
        axes[1].bar(names, [r["lifted_fraction"] or 0 for r in rows])
        axes[1].set_title("share of σ(O) ≥ 0.5 (own momenta)")
        axes[2].bar(names, [r["final_val_loss"] or 0 for r in rows])
        finite = [r["final_val_loss"] for r in rows if r["final_val_loss"]]
        if finite:
            axes[2].set_ylim(min(finite) - 0.05, max(finite) + 0.05)
        axes[2].set_title("final val loss")
        for ax in axes:
            ax.tick_params(axis="x", rotation=20)
        fig.tight_layout()
        fig.savefig(out / "ns_benchmark.png", dpi=110)
        plt.close(fig)
        made.append("ns_benchmark.png")
    return made


# --------------------------------------------------------------------------------------------- report
def report(cfg: dict, an: dict, bench: dict | None, est: dict, command: str, figs: list[str], results: dict,
           data_info: dict) -> str:
    sm = cfg["spectra"]["size_measure"]
    L = []
    L.append("# Spectral scaling laws of Muon at CPU scale, and the NS-schedule benchmark\n")
    L.append("Reproduces the measurement of *Spectral Scaling Laws of Muon* (arXiv 2606.04058; guide "
             "`papers.md` §2) on a ladder of tiny Llamas trained with `hf_muon.Muon` on real text, then "
             "compares Newton-Schulz step schedules on one model.\n")
    L.append(f"Command:\n\n```\n{command}\n```\n")
    ran = sum(r.get("wall_s", 0) for r in results.values() if isinstance(r, dict))
    L.append(f"Estimated cost of this config ({est['runs']} runs): {R.describe_estimate(est)} on this 2-core machine "
             f"(slower when other jobs share the cores). Training time recorded in the run JSONs: {ran / 60:.1f} min "
             f"({R.describe_environment(R.environment())}).\n")
    t, o, m = cfg["train"], cfg["optimizer"], cfg["model"]
    L.append("## Setup\n")
    L.append(f"- Data: `{data_info['corpus']}` from the local mirror, {data_info['train_tokens']:,} training tokens in "
             f"blocks of {data_info['block_size']}; GPT-2 ids re-indexed to the {data_info['vocab_size'] - 1} most "
             f"frequent + 1 'other' id ({data_info['other_token_share_train']:.1%} of training tokens are 'other'); "
             f"{data_info['val_blocks']} held-out blocks (contiguous tail) for the validation loss.")
    L.append(f"- Models: Llama, {m['layers']} layers, head dim {m['head_dim']} (MHA), SwiGLU width ≈ {m['mlp_ratio']:.3g}·d, "
             f"tied embeddings; widths {m['widths']}.")
    L.append(f"- Muon: lr {o['lr']} (scale_mode `{o['scale_mode']}`), momentum {o['momentum']}, nesterov {o['nesterov']}, "
             f"{o['ns_steps']} NS steps ({o['coefficients']}, NS dtype {o['ns_dtype']}), weight decay {o['weight_decay']}; "
             f"AdamW (embeddings, norms) lr {o['adamw_lr']}, betas {o['betas']}.")
    L.append(f"- Training: {t['steps']} steps × {t['batch_size']} blocks, warmup {t['warmup_steps']}, linear decay over "
             f"the last {t['decay_ratio']:.0%}, seed {t['seed']}.")
    sp = cfg["spectra"]
    L.append(f"- Spectra: every {sp['record_every']} steps, quantiles {sp['quantiles']} of σ(M)/‖M‖_F of the momentum "
             f"buffer; averaged over the last {sp['average_last']} records at step ≥ {sp['burn_in']} (burn-in). "
             f"Fit `log σ_q = c + α log M` with M = **{sm.replace('_', '-')} parameters** "
             f"({'embedding tables excluded' if sm == 'non_embedding' else 'embeddings included'}).\n")
    if an["ladder"]:
        L.append("## Ladder\n")
        L.append(R.markdown_table(
            ["width", "total params", "embedding", "non-embedding", "final val loss"],
            [[r["width"], f"{r['params']['total']:,}", f"{r['params']['embedding']:,}", f"{r['params']['non_embedding']:,}",
              R.fmt(r["final_val_loss"])] for r in an["ladder"]], "rrrrr"))
        L.append("")
    if an["fits"]:
        L.append("## Fitted exponents α (σ_0.5 ∝ M^α)\n")
        labels = an["labels"]
        rows = []
        for row in an["comparison"]:
            rows.append([row["type"]] + [f"{row[lb]:+.3f}" if row[lb] is not None else "—" for lb in labels]
                        + [f"{row['paper_mid']:+.2f}" if row["paper_mid"] is not None else "n/a",
                           f"{row['paper_N']:+.2f}" if row["paper_N"] is not None else "n/a",
                           "yes" if row["final_steeper"] else "no"])
        L.append(R.markdown_table(["type"] + labels + ["paper mid", "paper N", "N steeper than mid (by >0.05)?"], rows,
                                  "l" + "r" * (len(labels) + 2) + "c"))
        L.append("")
        spreads = [f["alpha_spread_q"] for f in an["fits"].values()]
        r2 = [f["per_quantile"].get("0.5", {}).get("r2") for f in an["fits"].values()]
        r2 = [x for x in r2 if x is not None]
        L.append(f"Across quantiles 0.1…0.9 the exponent of one (type, depth) varies by {min(spreads):.3f}…{max(spreads):.3f} "
                 f"(median {sorted(spreads)[len(spreads) // 2]:.3f}); R² of the σ_0.5 fits: {min(r2):.3f}…{max(r2):.3f}. "
                 "All quantile fits are in `summary.json`.\n")
        L.append("### Comparison with the paper's pattern\n")
        mids = [r["mid_mean"] for r in an["comparison"] if r["mid_mean"] is not None]
        steeper = [r["type"] for r in an["comparison"] if r["final_steeper"]]
        finals = {r["type"]: r.get("N") for r in an["comparison"] if r.get("N") is not None}
        steepest = min(finals, key=finals.get) if finals else None
        L.append("- Paper: layers up to mid-late depth scale mildly (≈ M^−0.25); the final layer's exponents are steeper "
                 "(Q −0.46, K −0.38, V −0.58, O −0.66, MLP-down −0.52, MLP-up −0.96; the paper's GPT-2-style MLP has no "
                 "gate). Those exponents are from a secondary source (guide §2 [S]).")
        if mids:
            L.append(f"- Here, mid-depth (N/4…3N/4) exponents average {sum(mids) / len(mids):+.3f} "
                     f"(range {min(mids):+.3f}…{max(mids):+.3f} over types).")
        L.append(f"- Final layer steeper than mid-depth (by more than 0.05) for {len(steeper)}/{len(an['comparison'])} "
                 f"types: {', '.join(steeper) or 'none'}. Steepest final-layer exponent: "
                 f"{steepest} ({finals[steepest]:+.3f})" if steepest else "- No final-layer fits.")
        L.append("- Reference point: at fixed depth M ∝ width², and a spectrum whose *shape* does not change with width "
                 "has σ/‖M‖_F ∝ 1/√width, i.e. α = −0.25 exactly. Exponents steeper than −0.25 mean the momentum "
                 "concentrates on relatively fewer directions as the model widens.")
        tot = [r["params"]["total"] for r in an["ladder"]]
        tokens = int(t["steps"]) * int(t["batch_size"]) * int(cfg["data"]["block_size"])
        L.append(f"- Caveats: {min(tot) / 1e6:.2f}M–{max(tot) / 1e6:.1f}M-parameter models (total) trained for "
                 f"{t['steps']} steps of {int(t['batch_size']) * int(cfg['data']['block_size'])} tokens ({tokens:,} "
                 "tokens), versus the paper's 77M–2.8B models at ~20 tokens/param; the ladder varies width only "
                 "(fixed depth); one seed. Small batches make the momentum noisier, which flattens spectra. Treat "
                 "the exponents as a check of the measurement pipeline and of the qualitative pattern, not as "
                 "estimates of the paper's laws.\n")
    if bench:
        L.append(f"## NS schedule benchmark (width {bench['width']})\n")
        u10 = bench["rows"].get(bench["u10"]) if bench["u10"] else None
        rows = []
        for name, r in bench["rows"].items():
            ratio = (r["ns_flops_per_step"] / u10["ns_flops_per_step"]) if u10 and u10["ns_flops_per_step"] else None
            steps = (f"{r['steps_mean']:.2f} (min {r['steps_min']}, max {r['steps_max']})"
                     if r["steps_mean"] is not None else "—")
            shown = r["schedule"] if not isinstance(r["schedule"], dict) else "auto: " + ", ".join(
                f"{k}={x}" for k, x in r["schedule"]["auto"].items())
            rows.append([name, f"`{shown}`", steps, R.fmt((r["ns_flops_per_step"] or 0) / 1e6, 4),
                         f"{ratio:.3f}×" if ratio is not None else "—", R.fmt(r["lifted_fraction"]),
                         R.fmt(r["orthogonality_error"]), R.fmt(r["final_val_loss"])])
        L.append(R.markdown_table(["schedule", "ns_steps", "steps at the end (mean over matrices)", "NS MFLOP/step",
                                   "× uniform-10", "share σ(O) ≥ 0.5", "‖OOᵀ−I‖/√m", "final val loss"], rows,
                                  "llrrrrrr"))
        L.append("")
        L.append("NS FLOPs per step: Σ over Muon matrices of steps·(4m²n + 2m³) (m ≤ n), for auto the steps in use at "
                 "every step averaged over training (auto also pays a Gram eigensolve every `auto_every` steps, not "
                 "counted). Quality: fp32 NS with that schedule's steps applied to the trained run's own momentum "
                 "buffers, mean over all Muon matrices; for auto the steps its rule picks on those momenta.\n")
        if bench["target"]:
            L.append(f"**{bench['target']['text']}**\n")
            L.append("(Matching quality means all three: share of lifted singular values at most `quality_tolerance` "
                     "below uniform-10's, ‖OOᵀ−I‖ at most `orth_tolerance` above it, and final validation loss at "
                     "most `loss_tolerance` above it; the tolerances are in the config and were fixed before any "
                     "run. Not tuned to meet the target.)\n")
        for name, v in (bench.get("variants") or {}).items():
            if v:
                settings = bench["rows"][name]["schedule"]["auto"]
                L.append(f"Auto variant `{name}` ({', '.join(f'{k}={x}' for k, x in settings.items())}; added to the "
                         f"config after the pre-registered `auto` result was seen, so judged beside it, not instead of "
                         f"it): {v['text'].split(': ', 1)[1]}\n")
        coef = cfg["optimizer"]["coefficients"]
        thr = [lift_threshold(coef, s) for s in range(1, 11)]
        L.append(f"Lift thresholds of `{coef}` (smallest normalised σ that s steps map to ≥ 0.5), s = 1…10: "
                 + ", ".join(f"{s}: {R.fmt(x, 3) if math.isfinite(x) else 'never'}" for s, x in enumerate(thr, 1))
                 + ". "
                 + ("Truncated to fewer than 5 steps, Polar Express does not map every σ above a small threshold to "
                    "≥ 0.5 (its early polynomials overshoot and then dip: one step sends σ = 0.8 to ≈ 0.25), and "
                    "`auto` requires all σ from its quantile up to be lifted, so with these coefficients it never "
                    "picks fewer than 5 steps; with `keller` coefficients (thresholds 0.15, 0.044, 0.013, 0.0037 for 1-4 steps) it can. "
                    if coef == "polar_express" else "")
                 + f"`auto` targets σ_{cfg['ns_benchmark']['auto_quantile']} ≥ {cfg['ns_benchmark']['auto_target']}, "
                 "i.e. it lifts the median direction; it does not aim for ‖OOᵀ−I‖ ≈ 0.\n")
        if bench["cross"]:
            q = bench["cross"]["quality"]
            L.append(f"Same comparison on one set of momenta (run `{bench['cross']['momenta_of']}`):\n")
            L.append(R.markdown_table(["schedule", "steps mean (min–max)", "NS MFLOP", "share σ(O) ≥ 0.5", "‖OOᵀ−I‖/√m"],
                                      [[n, f"{v['steps_mean']:.2f} ({v['steps_min']}–{v['steps_max']})",
                                        R.fmt(v["ns_flops"] / 1e6, 4), R.fmt(v["lifted_fraction"]),
                                        R.fmt(v["orthogonality_error"])] for n, v in q.items()], "lrrrr"))
            L.append("")
    return R.report_text(L, figs)


def main(argv=None) -> Path:
    rc = R.start_recipe(__file__, __doc__, DEFAULTS, argv)
    cfg, data = rc.cfg, rc.data
    runs = plan(cfg)
    est = estimate(cfg, runs, data.vocab_size)
    rc.announce(len(runs), est)
    for run in R.progress(runs, desc="spectral_laws runs"):
        rc.run(run["run_id"], run_spec(cfg, run), lambda run=run: execute(cfg, data, run))
    an = analyse(cfg, rc.results)
    bench = ns_benchmark_summary(cfg, rc.results)
    figs = plots(cfg, an, bench, rc.results, rc.out)
    if bench and bench["target"]:
        print(bench["target"]["text"], flush=True)
    for v in (bench or {}).get("variants", {}).values():
        if v:
            print(v["text"], flush=True)
    return rc.finish({"estimate": est, "ladder": an["ladder"], "fits": an["fits"], "comparison": an["comparison"],
                      "ns_benchmark": dict(bench or {})},
                     report(cfg, an, bench, est, rc.command, figs, rc.results, data.info))


if __name__ == "__main__":
    main()
