#!/usr/bin/env python
"""Learning-rate transfer across width for each Muon scale mode.

Usage::

    python recipes/lr_transfer/run.py recipes/lr_transfer/config.yaml [--out DIR]

Su Jianlin (kexue.fm 11416 / 11605; guide ``papers.md`` §7): with the update ``ΔW = −lr·α·msign(M)``
the scale α decides whether the best lr moves with width. ``moonlight`` (α = 0.2·√max(d_out, d_in))
matches AdamW's update RMS and so inherits AdamW's width dependence; ``mup`` (α = √(d_out/d_in)) fixes
the spectral norm of the update and should transfer; ``keller`` (√max(1, d_out/d_in)) differs from mup
only on down-projections and ``none`` (α = 1) only on up/gate-projections, for a Llama.

For every (width, mode) a log-spaced lr grid is swept at fixed depth. Each mode's grid is centred with
``hf_muon.convert_lr``: the config's ``base_lr`` in moonlight units, converted to the mode for a square
``d × d`` matrix at ``reference_width`` (so every mode starts from the same update size there); the
same grid is used at every width, so optima are compared on the same points. The optimum per width is
the best grid point, refined by a parabola in log-lr through it and its neighbours. Stability across
widths: the ratio of the largest to the smallest optimal lr and the slope of log lr* against log width
(0 = perfect transfer; −0.5 is the 1/√width drift expected for moonlight).

Each training run writes ``<out>/runs/<id>.json``; re-running skips finished runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from hf_muon.lab import research as R
from hf_muon.lab.models import build_llama, param_counts
from hf_muon.model.scaling import SCALE_MODES, convert_lr

DEFAULTS = {
    "name": "lr_transfer",
    "data": dict(R.DATA_DEFAULTS, block_size=64, vocab_size=2048),
    "model": {
        "layers": 2,
        "head_dim": 32,
        "mlp_ratio": 8 / 3,
        "tie_word_embeddings": True,
        "widths": [64, 128, 256, 512],
    },
    "train": dict(R.TRAIN_DEFAULTS),
    "optimizer": dict(R.OPTIM_DEFAULTS, adamw_lr=5e-3, scale_mode="moonlight"),
    "sweep": {"modes": list(SCALE_MODES), "base_lr": 0.01, "reference_width": None, "points": 6, "factor": 2.0},
    "stability": {"stable_ratio": 2.0},
    "throughput_gflops": R.DEFAULT_THROUGHPUT_GFLOPS,
    "ns_throughput_gflops": R.DEFAULT_NS_THROUGHPUT_GFLOPS,
    "threads": None,
}


def reference_width(cfg: dict) -> int:
    ref = cfg["sweep"]["reference_width"]
    if ref:
        return int(ref)
    ws = [int(w) for w in cfg["model"]["widths"]]
    return int(round(math.exp(sum(math.log(w) for w in ws) / len(ws))))  # geometric mean


def grids(cfg: dict) -> dict[str, list[float]]:
    """Per mode: the lr grid, centred at ``convert_lr(base_lr, (ref, ref), "moonlight", mode)``."""
    ref = reference_width(cfg)
    sw = cfg["sweep"]
    out = {}
    for mode in sw["modes"]:
        if mode not in SCALE_MODES:
            raise ValueError(f"sweep.modes: {mode!r}; valid: {', '.join(SCALE_MODES)}")
        center = convert_lr(float(sw["base_lr"]), (ref, ref), "moonlight", mode)
        out[mode] = R.lr_grid(center, float(sw["factor"]), int(sw["points"]))
    return out


def run_id(width: int, mode: str, lr: float) -> str:
    return f"w{width}_{mode}_lr" + re.sub(r"[^0-9a-zA-Z.+-]", "_", f"{lr:g}")


def build_model(cfg: dict, width: int, vocab: int):
    m = cfg["model"]
    return build_llama(
        width,
        int(m["layers"]),
        vocab,
        int(cfg["data"]["block_size"]),
        head_dim=int(m["head_dim"]),
        mlp_ratio=float(m["mlp_ratio"]),
        tie_word_embeddings=bool(m["tie_word_embeddings"]),
        seed=int(cfg["train"]["seed"]),
    )


def spec_of(cfg: dict, width: int, mode: str, lr: float) -> dict:
    return {
        "recipe": "lr_transfer",
        "width": width,
        "mode": mode,
        "lr": lr,
        "data": cfg["data"],
        "model": {k: v for k, v in cfg["model"].items() if k != "widths"},
        "train": cfg["train"],
        "optimizer": dict(cfg["optimizer"], lr=lr, scale_mode=mode),
    }


def execute(cfg: dict, data: R.LMData, width: int, mode: str, lr: float) -> dict:
    model = build_model(cfg, width, data.vocab_size)
    opt = R.build_optimizer(model, dict(cfg["optimizer"], lr=lr, scale_mode=mode))
    res = R.train(model, opt, data, cfg["train"], desc=f"d={width} {mode} lr={lr:g}")
    res["params"] = param_counts(model)
    return res


def estimate(cfg: dict, gr: dict, vocab: int) -> dict:
    import torch

    t = cfg["train"]
    block = int(cfg["data"]["block_size"])
    tokens = int(t["steps"]) * int(t["batch_size"]) * block
    train, ns_total = 0.0, 0.0
    for w in cfg["model"]["widths"]:
        with torch.device("meta"):
            model = build_model(cfg, int(w), vocab)
        ns = sum(
            R.ns_flops(p.shape, int(cfg["optimizer"]["ns_steps"]))
            for n, p in model.named_parameters()
            if p.ndim == 2 and ".layers." in n
        )
        train += R.train_flops(model, tokens, block)
        ns_total += ns * int(t["steps"])
    n_lrs = sum(len(g) for g in gr.values())
    return R.time_estimate(train * n_lrs, ns_total * n_lrs, cfg, runs=n_lrs * len(cfg["model"]["widths"]))


# ------------------------------------------------------------------------------------------ analysis
def stability_verdict(bests: list[dict], stable_ratio: float) -> tuple[str, list[float] | None]:
    """ "stable" / "not stable" / "undetermined" from each width's optimum, where an optimum at the top
    (bottom) grid edge only bounds the true optimum from below (above). Returns the verdict and the
    [lower, upper] bounds of max/min optimal lr over widths."""
    if any(b["best_lr"] is None for b in bests):
        return "undetermined (a width diverged at every lr)", None
    lo, hi = [], []
    for b in bests:
        if b["interior"]:
            lo.append(b["refined_lr"])
            hi.append(b["refined_lr"])
        elif b["best_lr"] >= b.get("grid_max", b["best_lr"]):
            lo.append(b["best_lr"])
            hi.append(math.inf)
        else:
            lo.append(0.0)
            hi.append(b["best_lr"])
    lower = max(1.0, max(lo) / min(hi)) if min(hi) > 0 else 1.0
    upper = max(hi) / min(lo) if min(lo) > 0 else math.inf
    bounds = [lower, upper if math.isfinite(upper) else None]  # None: unbounded
    if upper <= stable_ratio:
        return "stable", bounds
    if lower > stable_ratio:
        return "not stable", bounds
    return "undetermined (optimum at a grid edge)", bounds


def analyse(cfg: dict, gr: dict, results: dict) -> dict:
    widths = [int(w) for w in cfg["model"]["widths"]]
    modes = {}
    for mode, lrs in gr.items():
        per_width = {}
        for w in widths:
            losses = [results[run_id(w, mode, lr)]["final_val_loss"] for lr in lrs]
            b = R.best_lr(lrs, losses)
            b["losses"] = losses
            b["grid_max"] = max(lrs)
            per_width[w] = b
        opt = [per_width[w]["refined_lr"] for w in widths if per_width[w]["refined_lr"]]
        all_found = len(opt) == len(widths)
        ratio = max(opt) / min(opt) if all_found else None
        grid_opt = [per_width[w]["best_lr"] for w in widths if per_width[w]["best_lr"]]
        grid_ratio = max(grid_opt) / min(grid_opt) if len(grid_opt) == len(widths) else None
        slope = R.fit_power_law(widths, opt)["alpha"] if all_found and len(widths) >= 2 else None
        interior = all(per_width[w]["interior"] for w in widths)
        verdict, bounds = stability_verdict([per_width[w] for w in widths], float(cfg["stability"]["stable_ratio"]))
        modes[mode] = {
            "lrs": lrs,
            "per_width": {str(w): per_width[w] for w in widths},
            "ratio": ratio,
            "grid_ratio": grid_ratio,
            "slope": slope,
            "all_interior": interior,
            "stable": verdict == "stable",
            "verdict": verdict,
            "ratio_bounds": bounds,
        }
    return {"widths": widths, "modes": modes, "reference_width": reference_width(cfg)}


# ---------------------------------------------------------------------------------------------- plots
def plots(an: dict, out: Path) -> list[str]:
    plt = R.plt()
    if plt is None:
        return []
    modes = list(an["modes"])
    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.9), squeeze=False)
    cmap = plt.get_cmap("viridis")
    widths = an["widths"]
    for ax, mode in zip(axes[0], modes):
        m = an["modes"][mode]
        finite = []
        for i, w in enumerate(widths):
            b = m["per_width"][str(w)]
            pts = [(lr, v) for lr, v in zip(m["lrs"], b["losses"]) if v is not None]
            finite += [v for _, v in pts]
            color = cmap(i / max(1, len(widths) - 1))
            ax.semilogx([x for x, _ in pts], [y for _, y in pts], "o-", color=color, ms=4, label=f"d={w}")
            if b["refined_lr"]:
                ax.axvline(b["refined_lr"], color=color, ls=":", lw=1)
        if finite:
            lo = min(finite)
            ax.set_ylim(lo - 0.1, min(max(finite), lo + 2.5) + 0.1)
        ratio = f"{m['ratio']:.2f}×" if m["ratio"] else "n/a"
        ax.set_title(f"{mode}: lr* max/min = {ratio}")
        ax.set_xlabel(f"lr ({mode} units)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("final validation loss")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("loss vs lr per width (dotted: refined optimum)")
    R.save_figure(fig, out, "loss_vs_lr.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in modes:
        m = an["modes"][mode]
        ws = [w for w in widths if m["per_width"][str(w)]["refined_lr"]]
        if not ws:
            continue
        base = m["per_width"][str(ws[0])]["refined_lr"]
        ax.loglog(
            ws,
            [m["per_width"][str(w)]["refined_lr"] / base for w in ws],
            "o-",
            label=f"{mode} (slope {m['slope']:+.2f})" if m["slope"] is not None else mode,
        )
    ax.loglog(widths, [(w / widths[0]) ** -0.5 for w in widths], "k:", lw=1, label="∝ 1/√width")
    ax.set_xlabel("width")
    ax.set_ylabel(f"optimal lr / optimal lr at d={widths[0]}")
    ax.set_title("optimal lr vs width (flat = transfers)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    R.save_figure(fig, out, "optimal_lr_vs_width.png")
    return ["loss_vs_lr.png", "optimal_lr_vs_width.png"]


# --------------------------------------------------------------------------------------------- report
def report(cfg: dict, an: dict, est: dict, command: str, figs: list[str], results: dict, data_info: dict) -> str:
    t, o, m, sw = cfg["train"], cfg["optimizer"], cfg["model"], cfg["sweep"]
    widths = an["widths"]
    L = ["# Muon learning-rate transfer across width, per scale mode\n"]
    L.append(
        "Does the best Muon lr stay put when the model gets wider? One lr sweep per (width, scale mode) at fixed "
        "depth (guide `papers.md` §7: Su Jianlin on scale modes and LR transfer).\n"
    )
    L.append(f"Command:\n\n```\n{command}\n```\n")
    ran = sum(r.get("wall_s", 0) for r in results.values())
    L.append(
        f"Estimated cost of this config ({est['runs']} runs): {R.describe_estimate(est)} on this 2-core machine "
        f"(slower when other jobs share the cores). Training time recorded in the run JSONs: {ran / 60:.1f} min "
        f"({R.describe_environment(R.environment())}).\n"
    )
    L.append("## Setup\n")
    params = {
        w: next((r["params"] for k, r in results.items() if k.startswith(f"w{w}_") and "params" in r), None)
        for w in widths
    }
    sizes = ", ".join(
        f"d={w}: {p['total'] / 1e6:.2f}M ({p['non_embedding'] / 1e6:.2f}M non-emb.)" for w, p in params.items() if p
    )
    L.append(
        f"- Data: `{data_info['corpus']}`, {data_info['train_tokens']:,} training tokens in blocks of "
        f"{data_info['block_size']}, GPT-2 ids re-indexed to {data_info['vocab_size']} ids; "
        f"{data_info['val_blocks']} held-out blocks."
    )
    L.append(
        f"- Models: Llama, {m['layers']} layers (fixed), head dim {m['head_dim']}, SwiGLU ≈ {m['mlp_ratio']:.3g}·d, tied "
        f"embeddings; {sizes}."
    )
    L.append(
        f"- Muon: momentum {o['momentum']}, nesterov {o['nesterov']}, {o['ns_steps']} NS steps ({o['coefficients']}), "
        f"weight decay {o['weight_decay']}; AdamW (embeddings, norms) at a fixed lr {o['adamw_lr']} for every run."
    )
    L.append(
        f"- Training: {t['steps']} steps × {t['batch_size']} blocks, warmup {t['warmup_steps']}, linear decay over the "
        f"last {t['decay_ratio']:.0%}, seed {t['seed']}."
    )
    L.append(
        f"- Grids: {sw['points']} points, ×{sw['factor']:g} apart, centred per mode at "
        f"`convert_lr({sw['base_lr']}, ({an['reference_width']}, {an['reference_width']}), 'moonlight', mode)` "
        "(the same update size for a square matrix at the reference width); the same grid at every width.\n"
    )
    L.append("## Optimal lr per width\n")
    rows = []
    for mode, md in an["modes"].items():
        cells = []
        for w in widths:
            b = md["per_width"][str(w)]
            if b["best_lr"] is None:
                cells.append("all diverged")
            else:
                cells.append(
                    f"{R.fmt(b['refined_lr'], 3)} (grid {b['best_lr']:g}{'' if b['interior'] else ', **edge**'}; "
                    f"loss {R.fmt(b['best_loss'])})"
                )
        rows.append(
            [mode, f"{md['lrs'][0]:g}…{md['lrs'][-1]:g}"]
            + cells
            + [
                f"{md['ratio']:.2f}×" if md["ratio"] else "—",
                f"{md['slope']:+.2f}" if md["slope"] is not None else "—",
                md["verdict"],
            ]
        )
    L.append(
        R.markdown_table(
            ["mode", "grid"]
            + [f"d={w}: lr* (grid; loss)" for w in widths]
            + ["max/min lr*", "slope d log lr*/d log d", "verdict"],
            rows,
            "ll" + "l" * len(widths) + "rrl",
        )
    )
    L.append("")
    stab = float(cfg["stability"]["stable_ratio"])
    stable = [k for k, v in an["modes"].items() if v["stable"]]
    L.append(
        f"lr* is the parabolic refinement in log-lr around the best grid point (the grid point itself when it is "
        f"at an edge). 'Stable' means max/min lr* over widths {widths[0]}…{widths[-1]} is at most {stab:g}× "
        f"(the grid spacing is {sw['factor']:g}×). An **edge** optimum only bounds the true optimum from one side; "
        "the verdict then uses those bounds and says 'undetermined' when they straddle the threshold.\n"
    )
    L.append(f"- **Modes whose optimal lr stays within {stab:g}× across widths: {', '.join(stable) or 'none'}.**")
    for mode, md in an["modes"].items():
        if md["ratio"] is not None:
            L.append(
                f"- `{mode}`: lr* moves {md['ratio']:.2f}× over a {widths[-1] / widths[0]:g}× width range "
                f"(slope {md['slope']:+.2f}; 0 = transfers, −0.5 = ∝ 1/√width): {md['verdict']}."
            )
    L.append(
        "- Expectation (guide §7): moonlight matches AdamW's update RMS (0.2·√max(d_out, d_in)), so its lr* "
        "should fall roughly like 1/√width; mup/keller (and none, for square matrices) keep the update's spectral "
        "norm fixed and should transfer. For a Llama, keller differs from mup only on `down_proj` and none "
        "only on `gate_proj`/`up_proj`."
    )
    L.append(
        f"- Caveats: short runs ({t['steps']} steps of {int(t['batch_size']) * int(cfg['data']['block_size'])} "
        "tokens) favour larger lrs than long ones; one seed per point; embeddings and norms on AdamW at one fixed "
        "lr for every width (not muP-scaled), which can pull the optimum of narrow and wide models differently.\n"
    )
    return R.report_text(L, figs)


def main(argv=None) -> Path:
    rc = R.start_recipe(__file__, __doc__, DEFAULTS, argv)
    cfg, data = rc.cfg, rc.data
    gr = grids(cfg)
    est = estimate(cfg, gr, data.vocab_size)
    rc.announce(est["runs"], est)
    for mode, lrs in gr.items():
        print(f"  {mode}: lr grid {lrs}")
    plan = [(int(w), mode, lr) for w in cfg["model"]["widths"] for mode, lrs in gr.items() for lr in lrs]
    for w, mode, lr in R.progress(plan, desc="lr_transfer runs"):
        rc.run(
            run_id(w, mode, lr),
            spec_of(cfg, w, mode, lr),
            lambda w=w, mode=mode, lr=lr: execute(cfg, data, w, mode, lr),
        )
    an = analyse(cfg, gr, rc.results)
    figs = plots(an, rc.out)
    for mode, md in an["modes"].items():
        opt = {w: md["per_width"][str(w)]["refined_lr"] for w in an["widths"]}
        print(f"{mode}: optimal lr per width {opt}; max/min {R.fmt(md['ratio'], 3)}")
    return rc.finish(
        {"estimate": est, "grids": gr, "analysis": an}, report(cfg, an, est, rc.command, figs, rc.results, data.info)
    )


if __name__ == "__main__":
    main()
