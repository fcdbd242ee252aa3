"""bench_trainer.py's report: HF Trainer tokens/s per ``--optim`` and the diagnostics callback's cost."""

from __future__ import annotations

from ..machine import contended
from .format import header, markdown_table, run_line

NAME = "trainer"
SECTION = "trainer"
MODEL = "Llama h256/4L/688"  # for results that do not record ``model``
TARGET_OVERHEAD = 0.05


def table(results: dict[str, dict]) -> str:
    base = results["adamw_torch"]
    rows = [
        [k, f"{v['step_ms_median']:.1f}", f"{v['tokens_per_s']:.0f}", f"{v['tokens_per_s'] / base['tokens_per_s']:.3f}"]
        for k, v in results.items()
    ]
    return markdown_table(["run", "step ms (median)", "tokens/s", "× adamw_torch tokens/s"], rows, "lrrr")


def targets(results: dict[str, dict], every: int) -> list[dict]:
    """Diagnostics cost = per-step overhead + the spectral snapshot amortised over its interval."""
    muon, diag = results["muon"], results["muon + diagnostics"]
    per_step = diag["step_ms_median"] - muon["step_ms_median"]
    overhead = (per_step + diag["snapshot_ms"] / every) / muon["step_ms_median"]
    return [
        {
            "target": f"diagnostics at the default interval cost ≤ {TARGET_OVERHEAD:.0%} of step time",
            "measured": f"{overhead:.1%} (per step {per_step:+.1f} ms, snapshot {diag['snapshot_ms']:.0f} ms "
            f"/ {every} steps)",
            "met": overhead <= TARGET_OVERHEAD,
        }
    ]


def report(data: dict) -> str:
    cfg = data["config"]
    run = run_line(data) + "." if "date" in data else None
    lines = header("## HF Trainer end to end (CPU, fp32)", data, run) + [
        f"`python benchmarks/bench_trainer.py` — {data.get('model', MODEL)} with the GPT-2 vocabulary, batch "
        f"{cfg['batch']}×{cfg['block']} tokens of TinyStories, median of steps {cfg['warmup'] + 1}-{cfg['steps']}.",
        "",
        table(data["results"]),
        "",
        *[f"- {t['target']}: {t['measured']} — {'MET' if t['met'] else 'NOT MET'}" for t in data["targets"]],
    ]
    busy = [k for k, v in data["results"].items() if contended(v.get("other_cores"))]
    if busy:
        lines += ["", f"**CONTENDED**: other processes ran during {', '.join(busy)}; numbers not comparable."]
    return "\n".join(lines) + "\n"
