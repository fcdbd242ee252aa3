"""``hf-muon plot RUN_DIR``: PNG plots from ``muon_diagnostics.jsonl``.

Writes ``update_rms.png`` (update RMS per group kind over steps, with NS time share),
``entropy.png`` (SVD entropy per layer type over steps), ``spectra_steps.png`` (normalised momentum
σ-quantiles over steps per layer type) and ``spectra_depth.png`` (σ-quantiles over depth at the last
snapshot) next to the JSONL, or into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e})") from None
    return rows


def _find_jsonl(run_dir: Path) -> Path:
    if run_dir.is_file():
        return run_dir
    hits = sorted(run_dir.rglob("muon_diagnostics.jsonl"))
    if not hits:
        raise FileNotFoundError(f"no muon_diagnostics.jsonl under {run_dir} (train with MuonDiagnosticsCallback)")
    return hits[0]


def make_plots(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = _find_jsonl(Path(run_dir))
    out_dir = Path(out) if out else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = read_rows(path)
    steps = [r for r in rows if r.get("kind") == "step"]
    layers = [r for r in rows if r.get("kind") == "layer"]
    written = []

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for kind in ("muon", "adamw"):
        pts = [(r["step"], r[f"update_rms_{kind}"]) for r in steps if f"update_rms_{kind}" in r]
        if pts:
            ax.plot(*zip(*pts), label=kind)
    ax.set(xlabel="step", ylabel="update RMS", title="update RMS per group kind", yscale="log")
    ax.legend()
    pts = [(r["step"], 100 * r["ns_share"]) for r in steps if "ns_share" in r]
    if pts:
        ax2.plot(*zip(*pts))
    ax2.set(xlabel="step", ylabel="% of train step", title="Newton-Schulz time share")
    fig.tight_layout()
    written.append(out_dir / "update_rms.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    if layers:
        by_type: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in layers:
            by_type[r["layer_type"]][r["step"]].append(r["svd_entropy"])
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind, series in sorted(by_type.items()):
            xs = sorted(series)
            ax.plot(xs, [sum(series[x]) / len(series[x]) for x in xs], marker="o", label=kind)
        ax.set(xlabel="step", ylabel="SVD entropy (mean over depth)", title="weight SVD entropy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out_dir / "entropy.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

        qrows = [r for r in layers if "momentum_sigma_quantiles" in r]
        if qrows:
            qs = list(qrows[0]["momentum_sigma_quantiles"])
            fig, axes = plt.subplots(1, len(qs), figsize=(3.2 * len(qs), 3.4), sharey=True)
            axes = list(axes) if len(qs) > 1 else [axes]
            agg: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(
                lambda: defaultdict(lambda: defaultdict(list))
            )
            for r in qrows:
                for q, v in r["momentum_sigma_quantiles"].items():
                    agg[q][r["layer_type"]][r["step"]].append(v)
            for a, q in zip(axes, qs):
                for kind, series in sorted(agg[q].items()):
                    xs = sorted(series)
                    a.plot(xs, [sum(series[x]) / len(series[x]) for x in xs], label=kind)
                a.set(title=f"σ_{q} of M/‖M‖_F", xlabel="step", yscale="log")
            axes[0].legend(fontsize=7)
            fig.tight_layout()
            written.append(out_dir / "spectra_steps.png")
            fig.savefig(written[-1], dpi=110)
            plt.close(fig)

            last = max(r["step"] for r in qrows)
            fig, axes = plt.subplots(1, len(qs), figsize=(3.2 * len(qs), 3.4), sharey=True)
            axes = list(axes) if len(qs) > 1 else [axes]
            for a, q in zip(axes, qs):
                pts: dict[str, list[tuple[int, float]]] = defaultdict(list)
                for r in qrows:
                    if r["step"] == last and r.get("depth") is not None:
                        pts[r["layer_type"]].append((r["depth"], r["momentum_sigma_quantiles"][q]))
                for kind, xy in sorted(pts.items()):
                    a.plot(*zip(*sorted(xy)), marker="o", label=kind)
                a.set(title=f"σ_{q} at step {last}", xlabel="depth", yscale="log")
            axes[0].legend(fontsize=7)
            fig.tight_layout()
            written.append(out_dir / "spectra_depth.png")
            fig.savefig(written[-1], dpi=110)
            plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="hf-muon plot", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="training output dir (or the JSONL file itself)")
    ap.add_argument("--out", default=None, help="where to write the PNGs (default: beside the JSONL)")
    a = ap.parse_args(argv)
    for p in make_plots(a.run_dir, a.out):
        print(p)


if __name__ == "__main__":
    main()
