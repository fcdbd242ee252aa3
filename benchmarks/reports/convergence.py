"""bench_convergence.py's report: the runs, the best per optimizer, the plots and the target lines."""

from __future__ import annotations

import math
from pathlib import Path

from ..machine import contended
from .format import fmt_ms, header, markdown_table, pyplot, run_line, target_lines

NAME = "convergence"
SECTION = "convergence"

TARGET_STEP_FRACTION = 0.7
MIN_LR_RATIO = 0.1  # for results that do not record ``config.min_lr_ratio``
FAMILY_STYLE = {
    "adamw": ("tab:blue", "AdamW"),
    "torch_muon": ("tab:gray", "torch.optim.Muon (defaults)"),
    "hf_muon": ("tab:red", "hf_muon (PE)"),
    "hf_muon_keller": ("tab:green", "hf_muon (Keller)"),
}


# --------------------------------------------------------------------------- summary and targets
def first_reach(evals: list[dict], target: float) -> dict | None:
    """The first evaluation point at or below ``target`` (step and training seconds)."""
    for e in evals:
        if e["val_loss"] <= target:
            return {"step": e["step"], "train_seconds": e["train_seconds"]}
    return None


def best_of(runs: list[dict], family: str) -> dict | None:
    ok = [r for r in runs if r["family"] == family and r["final_val_loss"] is not None]
    return min(ok, key=lambda r: r["final_val_loss"]) if ok else None


def steps_between(evals: list[dict]) -> int | None:
    return evals[1]["step"] - evals[0]["step"] if len(evals) > 1 else None


def summarize(runs: list[dict], steps: int, lrs: tuple[float, ...], tiny: bool) -> tuple[dict, list[dict]]:
    """The best run per family, and the target lines (each run gets ``reaches_adamw_best``)."""
    caveat = " [tiny run: indicative only]" if tiny else ""
    best = {fam: best_of(runs, fam) for fam in FAMILY_STYLE}
    summary: dict = {
        fam: None if r is None else {k: r[k] for k in ("name", "lr", "final_val_loss", "train_seconds")}
        for fam, r in best.items()
    }
    for fam in ("adamw", "hf_muon"):
        r = best[fam]
        if r is not None and len(lrs) > 1 and r["lr"] in (min(lrs), max(lrs)):
            summary[fam]["lr_at_grid_edge"] = True
    targets: list[dict] = []
    adamw, hf, keller = best["adamw"], best["hf_muon"], best["hf_muon_keller"]

    line = f"best hf_muon reaches best AdamW's final val loss in ≤ {TARGET_STEP_FRACTION}× the steps"
    if adamw is None or hf is None:
        targets.append({"target": line, "status": "NOT MEASURED", "measured": "no finished AdamW or hf_muon run"})
    else:
        goal = adamw["final_val_loss"]
        for r in runs:
            r["reaches_adamw_best"] = first_reach(r["evals"], goal)
        hit = hf["reaches_adamw_best"]
        if hit is None:
            measured = f"{hf['name']} never reached {goal:.4f} (its final {hf['final_val_loss']:.4f})" + caveat
            targets.append({"target": line, "status": "NOT MET", "measured": measured, "value": None})
        else:
            frac = hit["step"] / steps
            summary["hf_muon_steps_to_adamw_best"] = hit["step"]
            summary["hf_muon_fraction_to_adamw_best"] = frac
            summary["hf_muon_seconds_to_adamw_best"] = hit["train_seconds"]
            measured = (
                f"{hf['name']} reaches {goal:.4f} ({adamw['name']}'s final) at step {hit['step']} of {steps} = "
                f"{frac:.2f}× ({hit['train_seconds']:.1f} s of training vs AdamW's {adamw['train_seconds']:.1f}"
                f" s); evaluation every {steps_between(hf['evals'])} steps" + caveat
            )
            targets.append(
                {
                    "target": line,
                    "status": "MET" if frac <= TARGET_STEP_FRACTION else "NOT MET",
                    "measured": measured,
                    "value": frac,
                }
            )

    line = "Polar Express final val loss ≤ Keller's (hf_muon, same lr and steps)"
    pe = next((r for r in runs if r["family"] == "hf_muon" and keller is not None and r["lr"] == keller["lr"]), None)
    if pe is None or keller is None or pe["final_val_loss"] is None:
        targets.append({"target": line, "status": "NOT MEASURED", "measured": "a PE or Keller run did not finish"})
    else:
        diff = pe["final_val_loss"] - keller["final_val_loss"]
        measured = (
            f"PE {pe['final_val_loss']:.4f} vs Keller {keller['final_val_loss']:.4f} at lr {pe['lr']:g} "
            f"(difference {diff:+.4f}; single seed)" + caveat
        )
        targets.append(
            {"target": line, "status": "MET" if diff <= 0 else "NOT MET", "measured": measured, "value": diff}
        )
    return summary, targets


# --------------------------------------------------------------------------- plots
def plots(data: dict, folder: Path) -> dict[str, str] | str:
    """Val loss vs steps and vs training seconds; returns the paths, or the reason no plot was drawn."""
    plt = pyplot()
    if isinstance(plt, str):
        return plt
    runs = [r for r in data["runs"] if len(r["evals"]) > 1]
    if not runs:
        return "no run has more than one evaluation point"
    best_names = {s["name"] for s in data["summary"].values() if isinstance(s, dict) and "name" in s}
    swept = {f for f in FAMILY_STYLE if sum(r["family"] == f for r in runs) > 1}  # "(best)" only among several
    steps = data["config"]["steps"]
    late = [e["val_loss"] for r in runs for e in r["evals"] if e["step"] >= steps / 4 and math.isfinite(e["val_loss"])]
    low = min(e["val_loss"] for r in runs for e in r["evals"])
    top = max(late) if late else None
    goal = (data["summary"].get("adamw") or {}).get("final_val_loss")
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, xkey, xlabel, fname in (
        ("steps", "step", "optimizer steps", "convergence_steps.png"),
        ("time", "train_seconds", "training wall-clock (s, evaluation excluded)", "convergence_time.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 5))
        for r in runs:
            color, label = FAMILY_STYLE[r["family"]]
            is_best = r["name"] in best_names
            ax.plot(
                [e[xkey] for e in r["evals"]],
                [e["val_loss"] for e in r["evals"]],
                color=color,
                lw=2.2 if is_best else 1.0,
                alpha=1.0 if is_best else 0.45,
                marker="o" if is_best else None,
                ms=3,
                label=f"{label} lr {r['lr']:g}" + (" (best)" if is_best and r["family"] in swept else ""),
            )
        if goal is not None:
            ax.axhline(goal, color="tab:blue", ls=":", lw=1, label=f"best AdamW final ({goal:.3f})")
        if top is not None and top > low:
            ax.set_ylim(low - 0.05 * (top - low), top + 0.1 * (top - low))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{data['config']['model']}, TinyStories — val loss vs {key}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = folder / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out[key] = str(path)
    return out


# --------------------------------------------------------------------------- report
def fmt_loss(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def report(data: dict) -> str:
    """The markdown section for RESULTS.md (also printed)."""
    cfg, info = data["config"], data["data"]
    run = (
        run_line(
            data,
            busy="wall-clock numbers not comparable",
            contended="other processes ran during some runs (marked CONTENDED)",
        )
        + f". Whole benchmark {data['seconds']:.0f} s."
    )
    lines = header("## Convergence (benchmarks/bench_convergence.py)", data, run) + [
        f"{cfg['model']} ({cfg['params']:,} params, fp32), trained from the same initial weights on the same "
        f"batches: TinyStories from the local mirror, GPT-2 tokens re-indexed to the {info['vocab_keep']:,} most "
        f"frequent training ids + one 'other' id (vocab {info['model_vocab']:,}; 'other' is "
        f"{100 * info['other_fraction_train']:.2f}% of training and {100 * info['other_fraction_val']:.2f}% of "
        f"validation tokens), blocks of {info['block']}; {info['train_blocks']:,} training blocks, "
        f"{info['val_blocks']} held-out validation blocks ({info['val_tokens']:,} tokens). Batch {cfg['batch']}, "
        f"{cfg['steps']} steps ({info['epochs']:.1f} passes), warmup {cfg['warmup_steps']} steps then cosine to "
        f"{cfg.get('min_lr_ratio', MIN_LR_RATIO):g}× peak, clip {cfg['clip_norm']:g}, weight decay "
        f"{cfg['weight_decay']:g} (none on norms). Validation loss every {cfg['eval_every']} steps; seconds = "
        "cumulative training time (forward, backward, clip, optimizer step), evaluation excluded. hf_muon NS dtype: "
        f"{cfg['hf_muon_ns_dtype']}. Raw numbers: `benchmarks/results/{data['json_name']}`.",
        "",
    ]
    goal = (data["summary"].get("adamw") or {}).get("final_val_loss")
    rows = []
    for r in data["runs"]:
        hit = r.get("reaches_adamw_best")
        reach = "—" if hit is None else f"{hit['step']} ({hit['train_seconds']:.1f} s)"
        note = r["note"]
        if r["status"] != "ok":
            note = f"{r['status']}; " + note
        if contended(r.get("other_cores")):
            note += f"; CONTENDED: other processes used {r['other_cores']:.1f} cores"
        rows.append(
            [
                r["name"],
                f"{r['lr']:g}",
                fmt_loss(r["final_val_loss"]),
                fmt_loss(r["min_val_loss"]),
                f"{r['train_seconds']:.1f}",
                fmt_ms(r["step_ms_median"]),
                reach,
                note,
            ]
        )
    columns = ["run", "lr", "final val", "min val", "train s", "step ms", f"step (s) to ≤ {fmt_loss(goal)}", "note"]
    lines += [markdown_table(columns, rows, "lrrrrrrl"), "", "Best per optimizer:", ""]
    rows = []
    for fam, (_, label) in FAMILY_STYLE.items():
        s = data["summary"].get(fam)
        if s is None:
            rows.append([label, "—", "—", "—"])
            continue
        edge = " (lr at the edge of the grid)" if s.get("lr_at_grid_edge") else ""
        rows.append([label, f"{s['lr']:g}{edge}", fmt_loss(s["final_val_loss"]), f"{s['train_seconds']:.1f}"])
    lines += [markdown_table(["optimizer", "lr", "final val loss", "train s"], rows, "llrr"), ""]
    drawn = data.get("plots")
    if isinstance(drawn, dict) and not data["args"]["tiny"]:
        lines += [
            f"![val loss vs steps](results/{Path(drawn['steps']).name}) "
            f"![val loss vs seconds](results/{Path(drawn['time']).name})",
            "",
        ]
    lines += ["### Targets", ""] + target_lines(data["targets"])
    return "\n".join(lines) + "\n"
