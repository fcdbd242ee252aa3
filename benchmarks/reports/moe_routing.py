"""bench_moe_routing.py's report: expert stacks on Muon vs on AdamW."""

from __future__ import annotations

import statistics

from .format import header, markdown_table, run_line

NAME = "moe_routing"
SECTION = "moe_routing"


def summarize(data: dict) -> dict:
    out = {}
    for policy in ("muon", "adamw"):
        by_lr = {}
        for lr in data["config"]["lrs"]:
            vals = [r["final_val_loss"] for r in data["runs"] if r["policy"] == policy and r["lr"] == lr]
            if vals and all(v is not None for v in vals):
                by_lr[lr] = vals
        best = min(by_lr, key=lambda lr: statistics.mean(by_lr[lr]))
        vals = by_lr[best]
        out[policy] = {
            "best_lr": best,
            "mean": statistics.mean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "per_seed": vals,
            "edge": best in (min(data["config"]["lrs"]), max(data["config"]["lrs"])),
            "by_lr": {str(k): statistics.mean(v) for k, v in by_lr.items()},
        }
    out["paired_diff_muon_minus_adamw"] = [a - b for a, b in zip(out["muon"]["per_seed"], out["adamw"]["per_seed"])]
    return out


def report(data: dict) -> str:
    s, cfg = data["summary"], data["config"]
    rows = [
        [
            f"`moe_experts={p}`",
            f"{100 * data['muon_share'][p]:.1f} %",
            f"{s[p]['best_lr']:g}" + (" (edge)" if s[p]["edge"] else ""),
            f"{s[p]['mean']:.4f} ± {s[p]['std']:.4f}",
            ", ".join(f"{k}: {v:.4f}" for k, v in s[p]["by_lr"].items()),
        ]
        for p in ("muon", "adamw")
    ]
    diffs = s["paired_diff_muon_minus_adamw"]
    verdict = "lower" if all(d < 0 for d in diffs) else "higher" if all(d > 0 for d in diffs) else "mixed"
    lines = header("## MoE experts on Muon vs AdamW (CPU)", data, run_line(data) + ".") + [
        f"`python benchmarks/bench_moe_routing.py` — Qwen3-MoE h{cfg['hidden']}/{cfg['layers']}L, {cfg['experts']} "
        f"experts (top-2, width {cfg['expert_width']}), {cfg['params']:,} params, {cfg['steps']} steps of "
        f"{cfg['batch']}×{cfg['block']} TinyStories tokens, hf_muon defaults otherwise; seeds {cfg['seeds']}.",
        "",
        markdown_table(
            ["routing", "params on Muon", "best lr", "final val loss (best lr)", "mean by lr"], rows, "lrrrl"
        ),
        "",
        f"Paired by seed at each policy's best lr, experts on Muon minus on AdamW: "
        f"{', '.join(f'{d:+.4f}' for d in diffs)} ({verdict} with experts on Muon).",
    ]
    return "\n".join(lines) + "\n"
