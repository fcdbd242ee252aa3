"""bench_ns_defaults.py's report: NS settings' quality on real momenta and their convergence over seeds."""

from __future__ import annotations

import statistics

from .format import header, markdown_table, run_line, target_lines

NAME = "ns_defaults"
SECTION = "ns_defaults"
DEFAULT_SETTING = "default: 5 steps polar_express"
BAND_TOL = 0.05  # the Gram quality gate of tests/ns/test_gram.py


def summarize(data: dict) -> dict:
    """Per run setting: final validation losses by seed, mean ± std, paired difference to the default, step ms."""
    by: dict[str, dict[int, dict]] = {}
    for r in data["runs"]:
        by.setdefault(r["family"], {})[r["seed"]] = r
    pairs = {k: v["paired_with"] for k, v in data["config"]["runs"].items()}
    out = {}
    for name, seeds in by.items():
        base = by.get(pairs.get(name) or "", {})
        finals = [seeds[s]["final_val_loss"] for s in sorted(seeds)]
        diffs = [seeds[s]["final_val_loss"] - base[s]["final_val_loss"] for s in sorted(seeds) if s in base]
        out[name] = {
            "final": finals,
            "mean": statistics.fmean(finals),
            "std": statistics.stdev(finals) if len(finals) > 1 else None,
            "paired_with": pairs.get(name),
            "paired_diff_mean": statistics.fmean(diffs) if diffs else None,
            "paired_diffs": diffs,
            "step_ms": statistics.median(seeds[s]["step_ms_median"] for s in seeds),
        }
    return out


def targets(data: dict) -> list[dict]:
    checks = []
    for model, q in data["quality"].items():
        rows = q["rows"]
        for dtype in ("bfloat16", "float32"):
            ref = rows[f"{DEFAULT_SETTING} | {dtype}"]
            for name, what in (
                ("4 steps polar_express_1e-2", "band inside and distance ≤ the default's, per matrix"),
                ("gram, 4 steps polar_express_1e-2", "band inside and distance ≤ the default's, per matrix"),
            ):
                r = rows[f"{name} | {dtype}"]
                ok = all(
                    lo >= rlo - 0.02 and hi <= rhi + 0.02 and e <= re
                    for lo, hi, e, rlo, rhi, re in zip(
                        r["sigma_min_each"],
                        r["sigma_max_each"],
                        r["err_each"],
                        ref["sigma_min_each"],
                        ref["sigma_max_each"],
                        ref["err_each"],
                    )
                )
                checks.append(
                    {
                        "target": f"{name}: {what} (±0.02) [{model}, {dtype}]",
                        "status": "MET" if ok else "NOT MET",
                        "measured": f"band [{r['sigma_min']:.3f}, {r['sigma_max']:.3f}] vs [{ref['sigma_min']:.3f}, "
                        f"{ref['sigma_max']:.3f}]; distance mean {r['err_mean']:.3f} vs "
                        f"{ref['err_mean']:.3f}, max {r['err_max']:.3f} vs {ref['err_max']:.3f}",
                    }
                )
            g = rows[f"gram, 5 steps polar_express | {dtype}"]
            ok = (
                abs(g["sigma_min"] - ref["sigma_min"]) < BAND_TOL
                and abs(g["sigma_max"] - ref["sigma_max"]) < BAND_TOL
                and abs(g["orth_max"] - ref["orth_max"]) < BAND_TOL
            )
            checks.append(
                {
                    "target": f"Gram NS: band and max ‖OOᵀ − I‖₂ within {BAND_TOL} of standard NS, same 5 steps "
                    f"[{model}, {dtype}]",
                    "status": "MET" if ok else "NOT MET",
                    "measured": f"[{g['sigma_min']:.3f}, {g['sigma_max']:.3f}], {g['orth_max']:.3f} vs "
                    f"[{ref['sigma_min']:.3f}, {ref['sigma_max']:.3f}], {ref['orth_max']:.3f}",
                }
            )
        b = q.get("bound")  # JSON written before the bound was measured has none
        if b is not None:
            best, ref = b["best_4"], b["default"]
            ok = best["mean"] <= ref["mean"] and best["max"] <= ref["max"]
            checks.append(
                {
                    "target": f"bound: 4 steps can reach the default's distance (oracle σ_max start, best "
                    f"greedy minimax ladder) [{model}, exact σ]",
                    "status": "MET" if ok else "NOT MET",
                    "measured": f"best ℓ={best['ell']:g}: mean {best['mean']:.3f}, max {best['max']:.3f} vs "
                    f"the default's {ref['mean']:.3f}, {ref['max']:.3f} (stable rank median "
                    f"{b['stable_rank']['median']:.2f})",
                }
            )
    s = data["summary"]
    for name, v in s.items():
        if v["paired_diff_mean"] is None:
            continue
        base = v["paired_with"]
        noise = s[base]["std"]
        ok = noise is not None and abs(v["paired_diff_mean"]) <= noise
        checks.append(
            {
                "target": f"convergence: {name} within seed noise of {base} (|mean paired difference| ≤ "
                f"{base}'s seed std)",
                "status": "MET" if ok else "NOT MET",
                "measured": f"{v['paired_diff_mean']:+.4f} (per seed {', '.join(f'{d:+.4f}' for d in v['paired_diffs'])})"
                f" vs std {noise:.4f}"
                if noise is not None
                else "one seed: no std",
            }
        )
    return checks


TITLE = "## Faster Newton-Schulz settings: quality and convergence (benchmarks/bench_ns_defaults.py)"


def report(data: dict, title: str = TITLE) -> str:
    lines = header(title, data, run_line(data) + ".")
    if data["quality"]:
        lines += [
            "Quality: momentum buffers of the benchmark models after a few default hf_muon steps on TinyStories, "
            "orthogonalized by each setting; σ band over all matrices, max ‖OOᵀ − I‖₂, and the distance "
            "‖O − UVᵀ‖_F/‖UVᵀ‖_F to the exact polar factor (mean, max). `aol` is a Turbo-Muon-style start "
            "computed in the benchmark only. Raw numbers: `benchmarks/results/ns_defaults.json`.",
            "",
        ]
    for model, q in data["quality"].items():
        lines += [
            f"### {model}: {q['matrices']} momentum matrices ({', '.join(q['shapes'])}) after {q['train_steps']} steps",
            "",
        ]
        rows = [
            [
                r["setting"],
                r["dtype"],
                f"{r['sigma_min']:.3f}",
                f"{r['sigma_max']:.3f}",
                f"{r['orth_max']:.3f}",
                f"{r['err_mean']:.3f}",
                f"{r['err_max']:.3f}",
            ]
            for r in q["rows"].values()
        ]
        lines += [
            markdown_table(
                ["setting", "dtype", "σ_min", "σ_max", "max ‖OOᵀ−I‖₂", "distance mean", "distance max"], rows, "llrrrrr"
            ),
            "",
        ]
        b = q.get("bound")
        if b is not None:
            sr = b["stable_rank"]
            lines += [
                f"Bound on the exact σ's (float64 scalar map, no rounding; stable rank Σσ²/σ_max² min "
                f"{sr['min']:.2f}, median {sr['median']:.2f}, max {sr['max']:.2f}):",
                "",
            ]
            lines += [
                markdown_table(
                    ["start and schedule", "distance mean", "distance max"],
                    [[k, f"{v['mean']:.3f}", f"{v['max']:.3f}"] for k, v in b["rows"].items()],
                    "lrr",
                ),
                "",
            ]
    c = data["config"]
    lines += [
        f"### Convergence: {c['model']}, {c['steps']} steps, lr {c['lr']:g}, seeds {c['seeds']}, NS {c['ns_dtype']}",
        "",
    ]
    rows = [
        [
            name,
            " / ".join(f"{x:.4f}" for x in v["final"]),
            f"{v['mean']:.4f}",
            "—" if v["std"] is None else f"{v['std']:.4f}",
            "—" if v["paired_diff_mean"] is None else f"{v['paired_diff_mean']:+.4f} vs {v['paired_with']}",
            f"{v['step_ms']:.1f}",
        ]
        for name, v in data["summary"].items()
    ]
    lines += [
        markdown_table(
            ["setting", "final val loss by seed", "mean", "std", "paired diff", "train step ms (median)"],
            rows,
            "llrrrr",
        ),
        "",
        "### Targets",
        "",
    ]
    lines += target_lines(data["targets"])
    return "\n".join(lines) + "\n"
