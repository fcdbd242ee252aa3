"""The study's PNG plots: loss curves of one seed, and bar grids (mean ± std over seeds) of the 2×2, the remedy
arms and BLiMP, with chance drawn where a column has one. Numbers come from :mod:`~hf_muon.lab.study.tables`."""

from __future__ import annotations

import statistics
from pathlib import Path

from . import tables as T


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(col: dict, out: Path) -> str:
    """``loss_curves.png``: pretraining and SFT train loss of the first seed's bases and 2×2 cells."""
    plt = _pyplot()
    first = col["seeds"][0] if col["seeds"] else None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for u in col["units"]:
        hist = [(h["step"], h["loss"]) for h in u["info"].get("log_history", []) if "loss" in h]
        if hist and u["seed"] == first and (u["kind"] == "base" or u["pair"] in T.MAIN_PAIRS):
            (axes[0] if u["kind"] == "base" else axes[1]).plot(*zip(*hist), label=u["pair"])
    axes[0].set(title=f"pretraining loss (seed {first})", xlabel="step", ylabel="train loss")
    axes[1].set(title=f"SFT loss, assistant tokens (seed {first})", xlabel="step", ylabel="train loss")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    return "loss_curves.png"


def _bar(ax, values: dict, pairs: list[str], label: str) -> None:
    vals = [list(values[p].get(label, {}).values()) for p in pairs]
    means = [statistics.fmean(v) if v else 0.0 for v in vals]
    errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
    ax.bar(range(len(pairs)), means, yerr=errs, capsize=3, color=[f"C{i % 10}" for i in range(len(pairs))])
    ax.set_xticks(range(len(pairs)), pairs, rotation=50, ha="right", fontsize=7)
    if T.CHANCE.get(label):
        ax.axhline(T.CHANCE[label], color="grey", ls="--", lw=1)
    if label.startswith("BLiMP") and label != T.BLIMP_FORGETTING:  # a few points around 50: zoom in
        span = [m + s for m, s in zip(means, errs)] + [m - s for m, s in zip(means, errs)] + [50.0]
        ax.set_ylim(min(span) - 3, max(span) + 3)
    ax.set_title(label, fontsize=8)


def bar_grid(values: dict, pairs: list[str], labels: list[str], path: Path) -> None:
    """One bar chart per column (``labels``), one bar per pair, six charts a row."""
    plt = _pyplot()
    ncols = min(len(labels), 6)
    nrows = -(-len(labels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(labels) :]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        _bar(ax, values, pairs, label)
    fig.suptitle("mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(col: dict, out: Path) -> list[str]:
    """Every plot the collected values allow; returns the file names written under ``out``."""
    values, files = col["values"], [loss_curves(col, out)]
    remedies = [p for p in values if p.startswith("adamw / ") and "(" in p]
    bases = [p for p in values if p.endswith("/ -")]
    main_cols = [c[0] for c in T.COLUMNS if c[0] != "pretrain val ppl" and c[0] not in T.BLIMP_FIELDS]
    charts = (
        ("scores.png", [p for p in T.MAIN_PAIRS if p in values], main_cols + list(T.FORGETTING_OF)),
        (
            "remedies.png",
            ["adamw / adamw", "adamw / muon", *remedies, "muon / muon"],
            main_cols + list(T.FORGETTING_OF),
        ),
        (
            "blimp.png",
            [*bases, *(p for p in T.MAIN_PAIRS if p in values)],
            ["BLiMP acc", *T.BLIMP_FIELDS, T.BLIMP_FORGETTING],
        ),
    )
    for name, pairs, cols in charts:
        pairs = [p for p in pairs if p in values]
        labels = [c for c in cols if any(values[p].get(c) for p in pairs)]
        skip = (name == "remedies.png" and not remedies) or (name == "blimp.png" and "BLiMP acc" not in labels)
        if not pairs or not labels or skip:
            continue
        bar_grid(values, pairs, labels, out / name)
        files.append(name)
    return files
