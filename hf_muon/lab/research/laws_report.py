"""Figures and report of ``recipes/spectral_laws`` (the recipe trains, records and fits; this renders), with the
paper's exponents it compares against.

Kept out of the recipe's script only for size; nothing else imports it, so it is not re-exported by
:mod:`hf_muon.lab.research`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hf_muon.lab import research as R
from hf_muon.ns.schedule import lift_threshold

TYPE_ORDER = ["q", "k", "v", "o", "gate", "up", "down"]

# Paper exponents (guide §2, source ii; the paper writes σ ∝ M^-α, here as the signed slope).
PAPER_SLOPE = {
    ("q", "N"): -0.46,
    ("k", "N"): -0.38,
    ("v", "N"): -0.58,
    ("o", "N"): -0.66,
    ("down", "N"): -0.52,
    ("up", "N"): -0.96,
}
PAPER_MID = -0.25  # Q/K/V/O at N/4, 2N/4 (~0.25) and 3N/4 (~0.25-0.27)


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
                ax.loglog(
                    xs,
                    [math.exp(fit["c"]) * x ** fit["alpha"] for x in xs],
                    "-",
                    color=colors[label],
                    label=f"{label}: α={fit['alpha']:+.2f}",
                )
            ax.set_title(kind)
            ax.legend(fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
        axes.flat[-1].axis("off")
        axes.flat[-1].text(
            0.0,
            0.5,
            f"σ_0.5 of M/‖M‖_F vs {cfg['spectra']['size_measure']} params\n"
            "points: ladder; lines: fit log σ = c + α log M\n"
            "α = −0.25: unchanged spectrum shape (σ ∝ 1/√width)",
            fontsize=10,
        )
        for ax in axes[1]:
            ax.set_xlabel(f"{cfg['spectra']['size_measure']} parameters")
        for ax in axes[:, 0]:
            ax.set_ylabel("σ_0.5 (normalised)")
        fig.suptitle("Spectral scaling of the Muon momentum (median normalised singular value)")
        made.append(R.save_figure(fig, out, "sigma_median_vs_size.png"))

        fig, ax = plt.subplots(figsize=(7, 4.5))
        mat = [
            [an["fits"].get(f"{k}@{lb}", {}).get("alpha_median_q", float("nan")) for lb in labels] for k in TYPE_ORDER
        ]
        im = ax.imshow(mat, cmap="viridis_r", aspect="auto")
        for i, row in enumerate(mat):
            for j, v in enumerate(row):
                paper = PAPER_SLOPE.get((TYPE_ORDER[i], labels[j]))
                ax.text(
                    j,
                    i,
                    f"{v:+.2f}" + (f"\n(paper {paper:+.2f})" if paper is not None else ""),
                    ha="center",
                    va="center",
                    color="k" if im.norm(v) < 0.4 else "w",
                    fontsize=8,
                )
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(TYPE_ORDER)), TYPE_ORDER)
        ax.set_title("fitted exponent α of σ_0.5 ∝ M^α")
        fig.colorbar(im, ax=ax)
        made.append(R.save_figure(fig, out, "exponents.png"))

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
    made.append(R.save_figure(fig, out, "burn_in.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for w in cfg["model"]["widths"]:
        res = results.get(f"ladder_w{w}")
        if res and res["val_curve"]:
            ax.plot([s for s, _ in res["train_curve"]], [v for _, v in res["train_curve"]], lw=1, label=f"d={w} train")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    made.append(R.save_figure(fig, out, "loss_curves.png"))

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
        made.append(R.save_figure(fig, out, "ns_benchmark.png"))
    return made


# --------------------------------------------------------------------------------------------- report
def report(
    cfg: dict, an: dict, bench: dict | None, est: dict, command: str, figs: list[str], results: dict, data_info: dict
) -> str:
    sm = cfg["spectra"]["size_measure"]
    L = []
    L.append("# Spectral scaling laws of Muon at CPU scale, and the NS-schedule benchmark\n")
    L.append(
        "Reproduces the measurement of *Spectral Scaling Laws of Muon* (arXiv 2606.04058; guide "
        "`papers.md` §2) on a ladder of tiny Llamas trained with `hf_muon.Muon` on real text, then "
        "compares Newton-Schulz step schedules on one model.\n"
    )
    L.append(f"Command:\n\n```\n{command}\n```\n")
    ran = sum(r.get("wall_s", 0) for r in results.values() if isinstance(r, dict))
    L.append(
        f"Estimated cost of this config ({est['runs']} runs): {R.describe_estimate(est)} on this 2-core machine "
        f"(slower when other jobs share the cores). Training time recorded in the run JSONs: {ran / 60:.1f} min "
        f"({R.describe_environment(R.environment())}).\n"
    )
    t, o, m = cfg["train"], cfg["optimizer"], cfg["model"]
    L.append("## Setup\n")
    L.append(
        f"- Data: `{data_info['corpus']}` from the local mirror, {data_info['train_tokens']:,} training tokens in "
        f"blocks of {data_info['block_size']}; GPT-2 ids re-indexed to the {data_info['vocab_size'] - 1} most "
        f"frequent + 1 'other' id ({data_info['other_token_share_train']:.1%} of training tokens are 'other'); "
        f"{data_info['val_blocks']} held-out blocks (contiguous tail) for the validation loss."
    )
    L.append(
        f"- Models: Llama, {m['layers']} layers, head dim {m['head_dim']} (MHA), SwiGLU width ≈ {m['mlp_ratio']:.3g}·d, "
        f"tied embeddings; widths {m['widths']}."
    )
    L.append(
        f"- Muon: lr {o['lr']} (scale_mode `{o['scale_mode']}`), momentum {o['momentum']}, nesterov {o['nesterov']}, "
        f"{o['ns_steps']} NS steps ({o['coefficients']}, NS dtype {o['ns_dtype']}), weight decay {o['weight_decay']}; "
        f"AdamW (embeddings, norms) lr {o['adamw_lr']}, betas {o['betas']}."
    )
    L.append(
        f"- Training: {t['steps']} steps × {t['batch_size']} blocks, warmup {t['warmup_steps']}, linear decay over "
        f"the last {t['decay_ratio']:.0%}, seed {t['seed']}."
    )
    sp = cfg["spectra"]
    L.append(
        f"- Spectra: every {sp['record_every']} steps, quantiles {sp['quantiles']} of σ(M)/‖M‖_F of the momentum "
        f"buffer; averaged over the last {sp['average_last']} records at step ≥ {sp['burn_in']} (burn-in). "
        f"Fit `log σ_q = c + α log M` with M = **{sm.replace('_', '-')} parameters** "
        f"({'embedding tables excluded' if sm == 'non_embedding' else 'embeddings included'}).\n"
    )
    if an["ladder"]:
        L.append("## Ladder\n")
        L.append(
            R.markdown_table(
                ["width", "total params", "embedding", "non-embedding", "final val loss"],
                [
                    [
                        r["width"],
                        f"{r['params']['total']:,}",
                        f"{r['params']['embedding']:,}",
                        f"{r['params']['non_embedding']:,}",
                        R.fmt(r["final_val_loss"]),
                    ]
                    for r in an["ladder"]
                ],
                "rrrrr",
            )
        )
        L.append("")
    if an["fits"]:
        L.append("## Fitted exponents α (σ_0.5 ∝ M^α)\n")
        labels = an["labels"]
        rows = []
        for row in an["comparison"]:
            rows.append(
                [row["type"]]
                + [f"{row[lb]:+.3f}" if row[lb] is not None else "—" for lb in labels]
                + [
                    f"{row['paper_mid']:+.2f}" if row["paper_mid"] is not None else "n/a",
                    f"{row['paper_N']:+.2f}" if row["paper_N"] is not None else "n/a",
                    "yes" if row["final_steeper"] else "no",
                ]
            )
        L.append(
            R.markdown_table(
                ["type"] + labels + ["paper mid", "paper N", "N steeper than mid (by >0.05)?"],
                rows,
                "l" + "r" * (len(labels) + 2) + "c",
            )
        )
        L.append("")
        spreads = [f["alpha_spread_q"] for f in an["fits"].values()]
        r2 = [f["per_quantile"].get("0.5", {}).get("r2") for f in an["fits"].values()]
        r2 = [x for x in r2 if x is not None]
        L.append(
            f"Across quantiles 0.1…0.9 the exponent of one (type, depth) varies by {min(spreads):.3f}…{max(spreads):.3f} "
            f"(median {sorted(spreads)[len(spreads) // 2]:.3f}); R² of the σ_0.5 fits: {min(r2):.3f}…{max(r2):.3f}. "
            "All quantile fits are in `summary.json`.\n"
        )
        L.append("### Comparison with the paper's pattern\n")
        mids = [r["mid_mean"] for r in an["comparison"] if r["mid_mean"] is not None]
        steeper = [r["type"] for r in an["comparison"] if r["final_steeper"]]
        finals = {r["type"]: r.get("N") for r in an["comparison"] if r.get("N") is not None}
        steepest = min(finals, key=finals.get) if finals else None
        L.append(
            "- Paper: layers up to mid-late depth scale mildly (≈ M^−0.25); the final layer's exponents are steeper "
            "(Q −0.46, K −0.38, V −0.58, O −0.66, MLP-down −0.52, MLP-up −0.96; the paper's GPT-2-style MLP has no "
            "gate). Those exponents are from a secondary source (guide §2 [S])."
        )
        if mids:
            L.append(
                f"- Here, mid-depth (N/4…3N/4) exponents average {sum(mids) / len(mids):+.3f} "
                f"(range {min(mids):+.3f}…{max(mids):+.3f} over types)."
            )
        L.append(
            f"- Final layer steeper than mid-depth (by more than 0.05) for {len(steeper)}/{len(an['comparison'])} "
            f"types: {', '.join(steeper) or 'none'}. Steepest final-layer exponent: "
            f"{steepest} ({finals[steepest]:+.3f})"
            if steepest
            else "- No final-layer fits."
        )
        L.append(
            "- Reference point: at fixed depth M ∝ width², and a spectrum whose *shape* does not change with width "
            "has σ/‖M‖_F ∝ 1/√width, i.e. α = −0.25 exactly. Exponents steeper than −0.25 mean the momentum "
            "concentrates on relatively fewer directions as the model widens."
        )
        tot = [r["params"]["total"] for r in an["ladder"]]
        tokens = int(t["steps"]) * int(t["batch_size"]) * int(cfg["data"]["block_size"])
        L.append(
            f"- Caveats: {min(tot) / 1e6:.2f}M–{max(tot) / 1e6:.1f}M-parameter models (total) trained for "
            f"{t['steps']} steps of {int(t['batch_size']) * int(cfg['data']['block_size'])} tokens ({tokens:,} "
            "tokens), versus the paper's 77M–2.8B models at ~20 tokens/param; the ladder varies width only "
            "(fixed depth); one seed. Small batches make the momentum noisier, which flattens spectra. Treat "
            "the exponents as a check of the measurement pipeline and of the qualitative pattern, not as "
            "estimates of the paper's laws.\n"
        )
    if bench:
        L.append(f"## NS schedule benchmark (width {bench['width']})\n")
        u10 = bench["rows"].get(bench["u10"]) if bench["u10"] else None
        rows = []
        for name, r in bench["rows"].items():
            ratio = (r["ns_flops_per_step"] / u10["ns_flops_per_step"]) if u10 and u10["ns_flops_per_step"] else None
            steps = (
                f"{r['steps_mean']:.2f} (min {r['steps_min']}, max {r['steps_max']})"
                if r["steps_mean"] is not None
                else "—"
            )
            shown = (
                r["schedule"]
                if not isinstance(r["schedule"], dict)
                else "auto: " + ", ".join(f"{k}={x}" for k, x in r["schedule"]["auto"].items())
            )
            rows.append(
                [
                    name,
                    f"`{shown}`",
                    steps,
                    R.fmt((r["ns_flops_per_step"] or 0) / 1e6, 4),
                    f"{ratio:.3f}×" if ratio is not None else "—",
                    R.fmt(r["lifted_fraction"]),
                    R.fmt(r["orthogonality_error"]),
                    R.fmt(r["final_val_loss"]),
                ]
            )
        L.append(
            R.markdown_table(
                [
                    "schedule",
                    "ns_steps",
                    "steps at the end (mean over matrices)",
                    "NS MFLOP/step",
                    "× uniform-10",
                    "share σ(O) ≥ 0.5",
                    "‖OOᵀ−I‖/√m",
                    "final val loss",
                ],
                rows,
                "llrrrrrr",
            )
        )
        L.append("")
        L.append(
            "NS FLOPs per step: Σ over Muon matrices of steps·(4m²n + 2m³) (m ≤ n), for auto the steps in use at "
            "every step averaged over training (auto also pays a Gram eigensolve every `auto_every` steps, not "
            "counted). Quality: fp32 NS with that schedule's steps applied to the trained run's own momentum "
            "buffers, mean over all Muon matrices; for auto the steps its rule picks on those momenta.\n"
        )
        if bench["target"]:
            L.append(f"**{bench['target']['text']}**\n")
            L.append(
                "(Matching quality means all three: share of lifted singular values at most `quality_tolerance` "
                "below uniform-10's, ‖OOᵀ−I‖ at most `orth_tolerance` above it, and final validation loss at "
                "most `loss_tolerance` above it; the tolerances are in the config and were fixed before any "
                "run. Not tuned to meet the target.)\n"
            )
        for name, v in (bench.get("variants") or {}).items():
            if v:
                settings = bench["rows"][name]["schedule"]["auto"]
                L.append(
                    f"Auto variant `{name}` ({', '.join(f'{k}={x}' for k, x in settings.items())}; added to the "
                    f"config after the pre-registered `auto` result was seen, so judged beside it, not instead of "
                    f"it): {v['text'].split(': ', 1)[1]}\n"
                )
        coef = cfg["optimizer"]["coefficients"]
        thr = [lift_threshold(coef, s) for s in range(1, 11)]
        L.append(
            f"Lift thresholds of `{coef}` (smallest normalised σ that s steps map to ≥ 0.5), s = 1…10: "
            + ", ".join(f"{s}: {R.fmt(x, 3) if math.isfinite(x) else 'never'}" for s, x in enumerate(thr, 1))
            + ". "
            + (
                "Truncated to fewer than 5 steps, Polar Express does not map every σ above a small threshold to "
                "≥ 0.5 (its early polynomials overshoot and then dip: one step sends σ = 0.8 to ≈ 0.25), and "
                "`auto` requires all σ from its quantile up to be lifted, so with these coefficients it never "
                "picks fewer than 5 steps; with `keller` coefficients (thresholds 0.15, 0.044, 0.013, 0.0037 for 1-4 steps) it can. "
                if coef == "polar_express"
                else ""
            )
            + f"`auto` targets σ_{cfg['ns_benchmark']['auto_quantile']} ≥ {cfg['ns_benchmark']['auto_target']}, "
            "i.e. it lifts the median direction; it does not aim for ‖OOᵀ−I‖ ≈ 0.\n"
        )
        if bench["cross"]:
            q = bench["cross"]["quality"]
            L.append(f"Same comparison on one set of momenta (run `{bench['cross']['momenta_of']}`):\n")
            L.append(
                R.markdown_table(
                    ["schedule", "steps mean (min–max)", "NS MFLOP", "share σ(O) ≥ 0.5", "‖OOᵀ−I‖/√m"],
                    [
                        [
                            n,
                            f"{v['steps_mean']:.2f} ({v['steps_min']}–{v['steps_max']})",
                            R.fmt(v["ns_flops"] / 1e6, 4),
                            R.fmt(v["lifted_fraction"]),
                            R.fmt(v["orthogonality_error"]),
                        ]
                        for n, v in q.items()
                    ],
                    "lrrrr",
                )
            )
            L.append("")
    return R.report_text(L, figs)


__all__ = ["PAPER_MID", "PAPER_SLOPE", "TYPE_ORDER", "plots", "report"]
