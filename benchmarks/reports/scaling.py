"""bench_scaling.py's report: step time per size, NS share, log-log slopes and the plot."""

from __future__ import annotations

import math
from pathlib import Path

from ..machine import contended
from .format import fmt_ms, fmt_ratio, header, markdown_table, pyplot, run_line

NAME = "scaling"
SECTION = "scaling"
NS_STEPS = 5  # for results that do not record ``ns_steps``
# (JSON key, record field, label): the series of the slopes and the plot
SERIES = (
    ("adamw", "step_ms", "AdamW"),
    ("adamw_fused", "step_ms", "AdamW fused"),
    ("hf_muon", "step_ms", "hf_muon"),
    ("hf_muon", "ns_ms", "hf_muon NS"),
)


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x) (None for fewer than two points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def points(sizes: list[dict], key: str, field: str) -> tuple[list[float], list[float]]:
    ok = [r for r in sizes if r[key].get(field)]
    return [r["params"] for r in ok], [r[key][field] for r in ok]


def slopes(sizes: list[dict]) -> dict[str, float | None]:
    return {label: loglog_slope(*points(sizes, key, field)) for key, field, label in SERIES}


def plots(data: dict, folder: Path) -> str:
    """Step ms vs params on log-log axes; returns the path or the reason no plot was drawn."""
    plt = pyplot()
    if isinstance(plt, str):
        return plt
    import matplotlib

    rows = data["sizes"]
    fig, ax = plt.subplots(figsize=(7, 5))
    styles = (
        dict(color="tab:blue", marker="o"),
        dict(color="tab:cyan", marker="s"),
        dict(color="tab:red", marker="o"),
        dict(color="tab:red", marker="x", ls="--", alpha=0.6),
    )
    labels = ("torch AdamW step", "torch AdamW (fused) step", "hf_muon step", "hf_muon NS part")
    for (key, field, _), label, style in zip(SERIES, labels, styles):
        xs, ys = points(rows, key, field)
        if xs:
            slope = loglog_slope(xs, ys)
            ax.plot(xs, ys, label=label + (f" (slope {slope:.2f})" if slope is not None else ""), **style)
    for r in rows:
        if r["hf_muon"].get("step_ms"):
            ax.annotate(
                r["size"]["name"],
                (r["params"], r["hf_muon"]["step_ms"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("parameters")
    ax.set_ylabel("optimizer.step() median ms")
    mach = data["machine"]
    threads = mach["torch_threads"]
    where = mach["gpu"]["name"] if mach.get("gpu") else f"{mach['cpu']}, {threads} thread{'s' * (threads != 1)}"
    ax.set_title(f"Optimizer step time vs model size ({where})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def fmt_count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _notes(r: dict) -> str:
    notes = []
    for label, rec in (("AdamW", r["adamw"]), ("AdamW fused", r.get("adamw_fused", {})), ("hf_muon", r["hf_muon"])):
        if not rec:
            continue
        if rec["status"] != "ok":
            notes.append(f"{label} FAILED: {rec['reason'][:160]}")
        elif contended(rec.get("other_cores")):
            notes.append(f"{label} CONTENDED ({rec['other_cores']:.1f} other cores)")
        if rec.get("timing", {}).get("reduced"):
            notes.append(f"{label} slow: 1 timed step")
    return "; ".join(notes)


def report(data: dict) -> str:
    """The markdown section for RESULTS.md (also printed)."""
    lines = header(
        "## Scaling with model size (benchmarks/bench_scaling.py)",
        data,
        run_line(data) + f". Whole benchmark {data['seconds']:.0f} s.",
    )
    lines += [
        "Median wall time of `optimizer.step()` alone (fixed seeded gradients, restored untimed before every "
        f"step) for Llamas of growing width and depth (vocab {data['sizes'][0]['size']['vocab']:,}, untied, fp32). "
        "torch AdamW on every parameter (default path and `fused=True`) vs `hf_muon.Muon(param_groups(model))` "
        "at defaults (AdamW part fused, Polar Express, "
        f"{data.get('ns_steps', NS_STEPS)} NS steps, batched, NS dtype {data['ns_dtype']}). NS = time inside "
        "hf_muon's `orthogonalize` within the same steps; share = NS ms / step ms. Raw numbers: "
        f"`benchmarks/results/{data['json_name']}`.",
        "",
    ]
    rows = []
    for r in data["sizes"]:
        a, af, h = r["adamw"], r.get("adamw_fused", {}), r["hf_muon"]
        rows.append(
            [
                r["size"]["name"],
                fmt_count(r["params"]),
                fmt_count(r["muon_params"]),
                fmt_ms(a.get("step_ms")),
                fmt_ms(af.get("step_ms")),
                fmt_ms(h.get("step_ms")),
                fmt_ratio(h.get("ratio_adamw")),
                fmt_ratio(h.get("ratio_adamw_fused")),
                fmt_ms(h.get("ns_ms")),
                "—" if h.get("ns_share") is None else f"{100 * h['ns_share']:.0f}%",
                "—" if h.get("ns_gflops") is None else f"{h['ns_gflops']:.0f}",
                f"{r['warmup']}+{r['repeats']}",
                _notes(r),
            ]
        )
    columns = [
        "size",
        "params",
        "Muon params",
        "AdamW ms",
        "AdamW fused ms",
        "hf_muon ms",
        "×AdamW",
        "×AdamW fused",
        "NS ms",
        "NS share",
        "NS GFLOP/s",
        "warmup+timed",
        "note",
    ]
    lines.append(markdown_table(columns, rows, "lrrrrrrrrrrrl"))
    lines += [
        "",
        "Log-log slope of step ms vs params over the sizes (1 = linear): "
        + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} —" for k, v in data["slopes"].items())
        + ".",
    ]
    if isinstance(data.get("plot"), str) and data["plot"].endswith(".png") and not data["args"]["tiny"]:
        lines += ["", f"![step ms vs params](results/{Path(data['plot']).name})"]
    return "\n".join(lines) + "\n"
