"""The demo's side-by-side numbers: loss table, head-to-head summary and the PNG of both curves."""

from __future__ import annotations

from pathlib import Path

from .setup import LABELS


def loss_table(results: dict[str, dict]) -> list[dict]:
    """Rows ``{"step": s, "adamw": loss | None, "muon": loss | None}`` over every logged step."""
    curves = {name: dict(r["train_curve"]) for name, r in results.items()}
    steps = sorted({s for c in curves.values() for s in c})
    return [{"step": s, **{name: curves[name].get(s) for name in results}} for s in steps]


def format_table(rows: list[dict], names: list[str]) -> str:
    """The side-by-side loss table as aligned text, with a Muon − AdamW column when both ran."""
    both = "adamw" in names and "muon" in names
    head = f"{'step':>5} | " + " | ".join(f"{LABELS[n] + ' train loss':>16}" for n in names)
    head += " | Muon - AdamW" if both else ""
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = [f"{row[n]:>16.4f}" if row[n] is not None else f"{'':>16}" for n in names]
        line = f"{row['step']:>5} | " + " | ".join(cells)
        if both and row["adamw"] is not None and row["muon"] is not None:
            line += f" | {row['muon'] - row['adamw']:>+12.4f}"
        lines.append(line)
    return "\n".join(lines)


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """First logged step whose training loss is at or below ``target`` (None if never)."""
    return next((s for s, loss in curve if loss <= target), None)


def summarize(results: dict[str, dict]) -> dict:
    """Head-to-head numbers when both optimizers ran (empty dict otherwise)."""
    if not {"adamw", "muon"} <= set(results):
        return {}
    a, m = results["adamw"], results["muon"]
    rows = [r for r in loss_table(results) if r["adamw"] is not None and r["muon"] is not None]
    later = [r for r in rows if r["step"] > 1]  # step 1 is the same initial weights for both
    target = a["train_curve"][-1][1]
    return {
        "logged_steps_compared": len(later),
        "logged_steps_muon_lower": sum(r["muon"] < r["adamw"] for r in later),
        "mean_train_loss_gap_muon_minus_adamw": sum(r["muon"] - r["adamw"] for r in later) / max(1, len(later)),
        "val_loss_gap_muon_minus_adamw": m["val_loss"] - a["val_loss"],
        "adamw_final_train_loss": target,
        "muon_step_reaching_adamw_final_train_loss": steps_to_reach(m["train_curve"], target),
        "adamw_final_step": a["train_curve"][-1][0],
    }


def save_plot(results: dict[str, dict], path: Path) -> bool:
    """Training and validation loss curves as a PNG (matplotlib, Agg); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        xs, ys = zip(*r["train_curve"], strict=True)
        ax1.plot(xs, ys, label=LABELS[name], marker=".")
        xs, ys = zip(*r["eval_curve"], strict=True)
        ax2.plot(xs, ys, label=f"{LABELS[name]} (final {r['val_loss']:.3f})", marker="o")
    ax1.set(title="training loss", xlabel="optimizer step", ylabel="cross-entropy")
    ax2.set(title="validation loss (held-out blocks)", xlabel="optimizer step", ylabel="cross-entropy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
