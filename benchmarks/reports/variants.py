"""bench_variants.py's report: the lr sweep, each family at its best lr over the seeds (mean ± std, steps to AdamW's
and Muon's final loss, step time, state bytes), the papers' claims against what reproduces here, the plots."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..machine import contended
from .convergence import first_reach, fmt_loss
from .format import fmt_ms, header, markdown_table, pyplot, run_line

NAME = "variants"
SECTION = "variants"
FAMILIES = {  # family: (label, hf_muon knobs)
    "muon": ("Muon", {}),
    "normuon": ("NorMuon", {"variant": "normuon"}),
    "adamuon": ("AdaMuon", {"variant": "adamuon"}),
    "cautious": ("Muon + cautious WD", {"cautious_wd": True}),
    "per_head": ("per-head Muon", {"per_head": True}),
}
LABELS = {"adamw": "AdamW", **{f: label for f, (label, _) in FAMILIES.items()}}
COLORS = {
    "adamw": "tab:blue",
    "muon": "tab:red",
    "normuon": "tab:green",
    "adamuon": "tab:purple",
    "cautious": "tab:orange",
    "per_head": "tab:brown",
}
# the papers' claims (checked in the papers; arXiv ids in the README's "Update-rule variants" section)
CLAIMS = {
    "normuon": "+11.3 % training efficiency over Muon, +21.7 % over Adam (1.1B, arXiv 2510.05491)",
    "adamuon": "> 40 % training efficiency over Adam at scale (arXiv 2507.11005)",
    "cautious": "−40 steps (≈ −1 %) on a modded-nanogpt record",
    "per_head": "−10 steps (paired-head Q/K, modded-nanogpt record 80)",
    "muon": "Muon over a well-tuned AdamW: ≈1.4× at 0.1B (arXiv 2509.02046)",
}


def best_lrs(runs: list[dict]) -> dict[str, float]:
    """Each family's lr with the lowest seed-0 final validation loss (finished runs only)."""
    out = {}
    for fam in ["adamw", *FAMILIES]:
        ok = [r for r in runs if r["family"] == fam and r.get("seed", 0) == 0 and r["final_val_loss"] is not None]
        if ok:
            out[fam] = min(ok, key=lambda r: r["final_val_loss"])["lr"]
    return out


def _at_best(data: dict, fam: str) -> list[dict]:
    lr = data["best_lrs"].get(fam)
    return [r for r in data["runs"] if r["family"] == fam and r["lr"] == lr and r["final_val_loss"] is not None]


def _std(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarize(data: dict) -> dict:
    """Per family at its best lr: final losses over seeds, mean ± std, steps to AdamW's / Muon's mean final loss."""
    fams = {}
    for fam in ["adamw", *FAMILIES]:
        runs = _at_best(data, fam)
        if runs:
            finals = [r["final_val_loss"] for r in runs]
            fams[fam] = {
                "lr": data["best_lrs"][fam],
                "finals": finals,
                "mean": statistics.fmean(finals),
                "std": _std(finals),
                "step_ms": statistics.median(r["step_ms_median"] for r in runs),
                "state_bytes": data["state_bytes"].get(fam),
            }
    for goal_key, ref in (("to_adamw", "adamw"), ("to_muon", "muon")):
        goal = fams.get(ref, {}).get("mean")
        for fam, s in fams.items():
            hits = [first_reach(r["evals"], goal) if goal is not None else None for r in _at_best(data, fam)]
            s[goal_key] = [h["step"] if h else None for h in hits]
    return {"families": fams, "qk_clip": _qk_summary(data)}


def _qk_summary(data: dict) -> dict:
    out = {}
    for r in data["runs"]:
        if r["family"] == "qk_clip":
            trace = [x for x in r.get("qk_clip_max_logit", []) if x is not None]
            key = "clipped" if "clipped" in r["name"] and "unclipped" not in r["name"] else "unclipped"
            out[key] = {
                "final_val_loss": r["final_val_loss"],
                "max": max(trace) if trace else None,
                "last": trace[-1] if trace else None,
                "status": r["status"],
                "late_max": max(trace[len(trace) // 2 :]) if trace else None,
            }
    return out


def _steps_text(steps: list, total: int) -> str:
    hit = [s for s in steps if s is not None]
    if not hit:
        return f"none of {len(steps)}"
    return f"{statistics.fmean(hit):.0f} ({len(hit)}/{len(steps)} seeds; {', '.join('—' if s is None else str(s) for s in steps)})"


def _compare(s: dict, ref: dict) -> tuple[float, float]:
    """(mean difference, 2 standard errors of it) of two families' final losses."""
    se = math.sqrt(s["std"] ** 2 / len(s["finals"]) + ref["std"] ** 2 / len(ref["finals"]))
    return s["mean"] - ref["mean"], 2 * se


def _speed(s: dict, target: str, steps: int) -> str:
    hits = [x for x in s[f"to_{target}"] if x is not None]
    name = LABELS[target]
    if not hits:
        return f"never reaches {name}'s mean final loss in {steps} steps"
    at = statistics.fmean(hits)
    return f"reaches {name}'s mean final loss at step {at:.0f} of {steps} ({steps}/{at:.0f} = {steps / at:.2f}×)"


def verdicts(data: dict) -> list[str]:
    """Plain statements: which reported gains reproduce here (a mean difference beyond 2 standard errors) and
    which do not."""
    fams, steps = data["summary"]["families"], data["config"]["steps"]
    lines = []
    for fam, claim in CLAIMS.items():
        target = "adamw" if fam in ("muon", "adamuon") else "muon"
        s, ref = fams.get(fam), fams.get(target)
        if s is None or ref is None:
            lines.append(f"- {LABELS[fam]} ({claim}): NOT MEASURED")
            continue
        diff, two_se = _compare(s, ref)
        word = (
            "**reproduces** (better"
            if diff < -two_se
            else "**does not reproduce** (worse"
            if diff > two_se
            else "**does not reproduce** (no difference beyond noise"
        )
        text = (
            f"- {LABELS[fam]} — claimed {claim}: {word}: final loss {diff:+.4f} nats vs {LABELS[target]}, "
            f"2·SE {two_se:.4f}); {_speed(s, target, steps)}"
        )
        other = "muon" if target == "adamw" and fam != "muon" else "adamw" if fam == "normuon" else None
        if other is not None and other in fams:
            d, t = _compare(s, fams[other])
            text += f"; vs {LABELS[other]} {d:+.4f} (2·SE {t:.4f}), {_speed(s, other, steps)}"
        lines.append(text + ".")
    qk = data["summary"]["qk_clip"]
    if "clipped" in qk and "unclipped" in qk and qk["clipped"]["max"] is not None:
        tau, c, u = data["config"]["qk_tau"], qk["clipped"], qk["unclipped"]
        lines.append(
            f"- QK-Clip (K2: max logit held at τ, no loss spike): at lr {data['config']['qk_lr']:g} the "
            f"unclipped run's max logit reaches {u['max']:.1f} (second half {u['late_max']:.1f}); with τ = "
            f"{tau:g} the step max (measured before each step's clip) peaks at {c['max']:.2f} and ends at "
            f"{c['last']:.2f}; final val loss {fmt_loss(c['final_val_loss'])} clipped vs "
            f"{fmt_loss(u['final_val_loss'])} unclipped."
        )
    return lines


def plots(data: dict, folder: Path) -> dict[str, str] | str:
    plt = pyplot()
    if isinstance(plt, str):
        return plt
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    fig, ax = plt.subplots(figsize=(8, 5))
    for fam, s in data["summary"]["families"].items():
        runs = _at_best(data, fam)
        xs = [e["step"] for e in runs[0]["evals"]]
        ys = [[r["evals"][i]["val_loss"] for r in runs if len(r["evals"]) > i] for i in range(len(xs))]
        mean = [statistics.fmean(y) for y in ys]
        sd = [_std(y) for y in ys]
        ax.plot(xs, mean, color=COLORS[fam], lw=1.8, label=f"{LABELS[fam]} lr {s['lr']:g} ({len(runs)} seeds)")
        ax.fill_between(
            xs, [m - d for m, d in zip(mean, sd)], [m + d for m, d in zip(mean, sd)], color=COLORS[fam], alpha=0.15
        )
    late = [
        e["val_loss"]
        for r in data["runs"]
        if r["family"] != "qk_clip"
        for e in r["evals"]
        if e["step"] >= data["config"]["steps"] / 4 and math.isfinite(e["val_loss"])
    ]
    if late:
        ax.set_ylim(min(late) - 0.05, sorted(late)[int(0.9 * (len(late) - 1))] + 0.1)
    out["loss"] = _save(
        plt,
        fig,
        ax,
        folder / "variants_loss.png",
        xlabel="optimizer steps",
        ylabel="validation loss (nats/token)",
        title=f"{data['config']['model']}: variants at their best lr, mean ± std over seeds",
    )
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in data["runs"]:
        if r["family"] == "qk_clip":
            trace = [math.nan if x is None else x for x in r.get("qk_clip_max_logit", [])]
            ax.plot(range(1, len(trace) + 1), trace, lw=1.2, label=r["name"])
    ax.axhline(data["config"]["qk_tau"], color="k", ls=":", lw=1, label=f"τ = {data['config']['qk_tau']:g}")
    ax.set_yscale("log")
    out["qk_clip"] = _save(
        plt,
        fig,
        ax,
        folder / "variants_qk_clip.png",
        xlabel="optimizer step",
        ylabel="max pre-softmax logit over heads (before the step's clip)",
        title=f"QK-Clip at lr {data['config']['qk_lr']:g} (log scale)",
    )
    return out


def _save(plt, fig, ax, path: Path, **labels) -> str:
    ax.set(**labels)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def report(data: dict) -> str:
    cfg, fams = data["config"], data["summary"]["families"]
    run = (
        run_line(
            data,
            busy="wall-clock numbers not comparable",
            contended="other processes ran during some runs (step times marked CONTENDED)",
        )
        + f". Whole benchmark {data['seconds']:.0f} s."
    )
    lines = header("## Update-rule variants (benchmarks/bench_variants.py)", data, run) + [
        f"{cfg['model']} ({cfg['params']:,} params, fp32), bench_convergence's data, schedule and evaluation: "
        f"{cfg['steps']} steps of {cfg['batch']}×{cfg['block']} tokens, warmup {cfg['warmup_steps']} then cosine to "
        f"{cfg['min_lr_ratio']:g}×, clip {cfg['clip_norm']:g}, weight decay {cfg['weight_decay']:g}, validation every "
        f"{cfg['eval_every']} steps on {data['data']['val_blocks']} held-out blocks. Seeds {cfg['seeds']} change the "
        f"initial weights and the batch order (seed 0 = bench_convergence's run). lr sweep on seed 0 (AdamW "
        f"{cfg['adamw_lrs']}, hf_muon variants {cfg['muon_lrs']}, moonlight scale, NS {cfg['hf_muon_ns_dtype']}); "
        f"the best lr then on every seed. Raw numbers: `benchmarks/results/{data['json_name']}`.",
        "",
    ]
    sweep = {}
    for r in data["runs"]:
        if r["family"] != "qk_clip" and r.get("seed", 0) == 0:
            sweep.setdefault(r["family"], {})[r["lr"]] = r
    lrs = sorted({lr for runs in sweep.values() for lr in runs})
    rows = [
        [LABELS[f]] + [fmt_loss(sweep[f][lr]["final_val_loss"]) if lr in sweep[f] else "" for lr in lrs] for f in sweep
    ]
    lines += [
        "Seed-0 lr sweep, final validation loss:",
        "",
        markdown_table(["optimizer"] + [f"lr {lr:g}" for lr in lrs], rows, "l" + "r" * len(lrs)),
        "",
    ]
    rows = []
    for fam, s in fams.items():
        busy = any(contended(r.get("other_cores")) for r in _at_best(data, fam))
        mb = "—" if s["state_bytes"] is None else f"{s['state_bytes'] / 2**20:.2f}"
        rows.append(
            [
                LABELS[fam],
                f"{s['lr']:g}",
                f"{s['mean']:.4f} ± {s['std']:.4f}",
                ", ".join(f"{x:.4f}" for x in s["finals"]),
                _steps_text(s["to_adamw"], cfg["steps"]),
                _steps_text(s["to_muon"], cfg["steps"]),
                fmt_ms(s["step_ms"]) + (" CONTENDED" if busy else ""),
                mb,
            ]
        )
    goal_a = fams.get("adamw", {}).get("mean")
    goal_m = fams.get("muon", {}).get("mean")
    lines += [
        f"At the best lr, over {len(cfg['seeds'])} seeds (steps: first evaluation at or below the target, "
        f"every {cfg['eval_every']} steps; mean over the seeds that reach it):",
        "",
        markdown_table(
            [
                "optimizer",
                "best lr",
                "final val (mean ± std)",
                "per seed",
                f"steps to AdamW's {fmt_loss(goal_a)}",
                f"steps to Muon's {fmt_loss(goal_m)}",
                "step ms (median)",
                "state MiB",
            ],
            rows,
            "llrlllrr",
        ),
        "",
    ]
    drawn = data.get("plots")
    if isinstance(drawn, dict) and not data["args"]["tiny"]:
        lines += [
            f"![val loss](results/{Path(drawn['loss']).name}) "
            f"![QK-Clip max logit](results/{Path(drawn['qk_clip']).name})",
            "",
        ]
    lines += ["### What reproduces at this scale", ""] + verdicts(data)
    return "\n".join(lines) + "\n"
