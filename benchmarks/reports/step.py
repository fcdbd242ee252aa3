"""bench_step.py's report: step time and state per optimizer and model, NS throughput, the target lines."""

from __future__ import annotations

import statistics

from ..machine import contended
from .format import fmt_ms, fmt_ratio, header, markdown_table, run_line, target_lines

NAME = "step"
SECTION = "bench_step"

# Every target is a ratio to something measured in the same run on the same CPU, so it means the same on CPUs with
# native bf16 dot products and on avx2-only ones (where bf16 NS is 30-100x slower and the auto dtype is fp32).
TARGET_FLOOR_EFFICIENCY = 0.85  # hf_muon ≤ AdamW + the NS matmul floor in the fastest dtype measured / 0.85
TARGET_MODEL = "llama-7.4M"
TARGET_PEER_RATIO = 0.8  # hf_muon ≤ 0.8× the fastest peer Muon's step, per model
TARGET_GRAM_RATIO = 0.7  # Gram NS ≤ 0.7× the standard floor on the rectangular matrices
FLATTENED = "3-D expert stacks flattened"  # a peer that does less work than per-expert NS (record note)


def _check(line: str, ok: bool, measured: str, **values) -> dict:
    return {"target": line, "status": "MET" if ok else "NOT MET", "measured": measured, **values}


def targets(models: dict[str, dict], ns: dict | None, device_type: str, tiny: bool) -> list[dict]:
    """The target lines, each with the measured value and MET / NOT MET (NOT MEASURED, SKIPPED off CPU)."""
    checks: list[dict] = []
    caveat = f" [tiny run: not the full {TARGET_MODEL}, indicative only]" if tiny else ""
    skipped = {"status": "SKIPPED", "measured": f"device is {device_type}"} if device_type != "cpu" else None

    def rec(name: str) -> dict:
        return {r["name"]: r for r in models.get(TARGET_MODEL, {}).get("optimizers", [])}.get(name, {})

    fastest = _fastest_floor(ns) if ns else None
    floor_ms = fastest["floor"]["ms"] if fastest else None
    # hf_muon against torch's default AdamW, then the like-for-like pairs: hf_muon's unfused AdamW part
    # against torch's unfused AdamW, and its fused default against torch's fused AdamW.
    # (hf_muon's fused default against torch's fused AdamW is a per-model line of speed_targets)
    pairs = [
        ("hf_muon", "AdamW (torch)", ""),
        ("hf_muon fused=False", "AdamW (torch)", " [both AdamW parts unfused]"),
    ]
    for hf_name, adamw_name, tag in pairs:
        hf_r, adamw_r = rec(hf_name), rec(adamw_name)
        line = f"CPU: {hf_name} step ≤ {adamw_name} step + floor/{TARGET_FLOOR_EFFICIENCY}{tag}"
        if skipped:
            checks.append({"target": line, **skipped})
        elif hf_r.get("step_ms") and adamw_r.get("step_ms") and floor_ms:
            bound = adamw_r["step_ms"] + floor_ms / TARGET_FLOOR_EFFICIENCY
            checks.append(
                _check(
                    line,
                    hf_r["step_ms"] <= bound,
                    f"{hf_r['step_ms']:.1f} ms vs {adamw_r['step_ms']:.1f} + {floor_ms:.1f}/"
                    f"{TARGET_FLOOR_EFFICIENCY} = {bound:.1f} ms ({_floor_dtype(ns, fastest)}){caveat}",
                    value=hf_r["step_ms"],
                    bound=bound,
                )
            )
        else:
            checks.append(
                {
                    "target": line,
                    "status": "NOT MEASURED",
                    "measured": f"{hf_name}, {adamw_name} or floor missing",
                }
            )

    checks += speed_targets(models, data_floors(ns, models), skipped, caveat)

    line = "state bytes = AdamW's − 4 B × (Muon params)"
    for name, m in models.items():
        by = {r["name"]: r for r in m["optimizers"]}
        hf_b, ad_b = by.get("hf_muon", {}).get("state_bytes"), by.get("AdamW (torch)", {}).get("state_bytes")
        if hf_b is None or ad_b is None:
            checks.append({"target": f"{line} [{name}]", "status": "NOT MEASURED", "measured": "missing"})
            continue
        expected = ad_b - 4 * m["muon_params"]
        diff = hf_b - expected
        text = f"hf_muon {hf_b:,} B, AdamW {ad_b:,} − 4×{m['muon_params']:,} = {expected:,} B; difference {diff:+,} B"
        # AdamW also keeps a 0-d fp32 `step` per tensor; with it, "one buffer per Muon param vs AdamW's two"
        # is exactly diff == -4 B x (Muon tensors).
        if diff == -4 * m["muon_tensors"]:
            text += (
                f" = the {m['muon_tensors']} 0-d fp32 `step` tensors AdamW keeps per Muon tensor"
                " (moment buffers alone: equal)"
            )
        checks.append(
            _check(
                f"{line} [{name}]",
                diff in (0, -4 * m["muon_tensors"]),
                text + caveat,
                value=hf_b,
                expected=expected,
            )
        )
    return checks


def data_floors(ns: dict | None, models: dict) -> dict[str, dict]:
    """The NS measurement per model: the target model's ``ns_throughput`` and any ``ns_floor`` kept per model."""
    out = {name: m["ns_floor"] for name, m in models.items() if m.get("ns_floor")}
    if ns:
        out.setdefault(ns["model"], ns)
    return out


def _default_floor(ns: dict) -> dict | None:
    return next((r for r in ns["rows"] if r["dtype"] == ns["default_dtype"]), None)


def _fastest_floor(ns: dict) -> dict | None:
    """The NS row whose bare matmul floor is fastest: the floor any Muon could reach on this CPU, whatever dtype
    hf_muon's auto policy picks (bf16 with native bf16 dot products, fp32 without)."""
    rows = [r for r in ns["rows"] if "floor" in r]
    return min(rows, key=lambda r: r["floor"]["ms"]) if rows else None


def _floor_dtype(ns: dict, row: dict) -> str:
    measured = (
        "the fastest of " + "/".join(r["dtype"] for r in ns["rows"])
        if len(ns["rows"]) > 1
        else "the only dtype measured"
    )
    return f"{row['dtype']} floor, {measured}"


def _paired(a: dict, b: dict) -> str:
    """``; per round …`` : the median over the timed rounds of a's time / b's time in the same round (robust to the
    host's slow spells, which hit both); empty when the JSON has no per-round times."""
    ta, tb = (r.get("timing", {}).get("times_ms") or [] for r in (a, b))
    if not ta or len(ta) != len(tb):
        return ""
    return f"; median per-round ratio {statistics.median(x / y for x, y in zip(ta, tb)):.3f}×"


def speed_targets(models: dict, floors: dict[str, dict], skipped: dict | None, caveat: str) -> list[dict]:
    """Issue-13 targets: per model the default step against fused AdamW + floor/0.85 and against the fastest peer
    Muon (peers that flatten expert stacks do less work and are left out), and Gram NS against the standard
    floor on the rectangular matrices. Only models whose JSON has the measurements get a line."""
    checks = []
    for name, m in models.items():
        by = {r["name"]: r for r in m["optimizers"] if r.get("status") == "ok"}
        hf, fused = by.get("hf_muon"), by.get("AdamW (torch, fused=True)")
        ns = floors.get(name)
        row = _fastest_floor(ns) if ns else None
        if ns and hf and fused and row:
            line = f"CPU: hf_muon default step ≤ fused AdamW + floor/{TARGET_FLOOR_EFFICIENCY} [{name}]"
            if skipped:
                checks.append({"target": line, **skipped})
            else:
                bound = fused["step_ms"] + row["floor"]["ms"] / TARGET_FLOOR_EFFICIENCY
                checks.append(
                    _check(
                        line,
                        hf["step_ms"] <= bound,
                        f"{hf['step_ms']:.1f} ms vs {fused['step_ms']:.2f} + {row['floor']['ms']:.1f}/"
                        f"{TARGET_FLOOR_EFFICIENCY} = {bound:.1f} ms ({_floor_dtype(ns, row)}, "
                        f"{ns['steps']}-step Polar Express){caveat}",
                        value=hf["step_ms"],
                        bound=bound,
                    )
                )
        peers = [r for r in by.values() if r["family"] == "peer" and FLATTENED not in r["note"]]
        if hf and peers:
            best = min(peers, key=lambda r: r["step_ms"])
            for hf_name in ("hf_muon", "hf_muon 4 steps polar_express_1e-2"):
                r = by.get(hf_name)
                if r is None:
                    continue
                ratio = r["step_ms"] / best["step_ms"]
                line = f"CPU: {hf_name} step ≤ {TARGET_PEER_RATIO}× the fastest peer Muon's [{name}]"
                checks.append(
                    {"target": line, **skipped}
                    if skipped
                    else _check(
                        line,
                        ratio <= TARGET_PEER_RATIO,
                        f"{ratio:.3f}× ({r['step_ms']:.1f} ms vs {best['name']} "
                        f"{best['step_ms']:.1f} ms{_paired(r, best)}){caveat}",
                        value=ratio,
                    )
                )
    for name, ns in floors.items():
        row = _default_floor(ns)
        if not row or "rect_floor" not in row:
            continue
        for key, what in (
            ("rect_gram_bare", f"Gram NS, the same {ns['steps']} Polar Express steps"),
            (
                "rect_gram_ladder4_bare",
                "Gram NS, 4 steps of polar_express_1e-2 (not equal quality on "
                "the benchmark models' momenta: bench_ns_defaults)",
            ),
        ):
            ratio = row[key]["ms"] / row["rect_floor"]["ms"]
            line = (
                f"CPU: {what} ≤ {TARGET_GRAM_RATIO}× the standard {ns['steps']}-step floor on {name}'s "
                f"rectangular matrices ({ns['default_dtype']})"
            )
            checks.append(
                {"target": line, **skipped}
                if skipped
                else _check(
                    line,
                    ratio <= TARGET_GRAM_RATIO,
                    f"{ratio:.3f}× ({row[key]['ms']:.1f} ms vs "
                    f"{row['rect_floor']['ms']:.1f} ms; shapes {', '.join(ns['rect_shapes'])}){caveat}",
                    value=ratio,
                )
            )
    return checks


def model_table(m: dict) -> str:
    rows = []
    for r in m["optimizers"]:
        note = r["note"]
        if r.get("ratio_torch_muon") is not None:
            note = f"{fmt_ratio(r['ratio_torch_muon'])} torch.optim.Muon; " + note
        if r["status"] != "ok":
            note = f"FAILED: {r['reason'][:240]}"
        state = f"{r['state_bytes'] / 2**20:.2f}" if r.get("state_bytes") is not None else "—"
        faults = r.get("faults_per_step")
        rows.append(
            [
                r["name"],
                fmt_ms(r["step_ms"]),
                fmt_ratio(r.get("ratio_adamw")),
                state,
                "—" if faults is None else f"{faults:,.0f}",
                note,
            ]
        )
    return markdown_table(["optimizer", "step ms", "×AdamW", "state MB", "page faults/step", "note"], rows, "lrrrrl")


NS_LABELS = (
    ("hf_muon batched NS", "hf_muon_batched"),
    ("hf_muon unbatched NS", "hf_muon_unbatched"),
    ("bare same-shape matmul floor", "floor"),
    ("hf_muon batched, ns_method=gram", "gram_batched"),
    ("hf_muon batched, ns_method=auto", "auto_batched"),
    ("hf_muon batched, 4 steps polar_express_1e-2", "ladder4_batched"),
    ("hf_muon batched, gram + 4 steps polar_express_1e-2", "gram_ladder4_batched"),
    ("rectangular only: standard floor", "rect_floor"),
    ("rectangular only: bare Gram recursion", "rect_gram_bare"),
    ("rectangular only: bare Gram, 4 steps polar_express_1e-2", "rect_gram_ladder4_bare"),
    ("rectangular only: standard floor, 4 steps polar_express_1e-2", "rect_ladder4_floor"),
)


def ns_table(ns: dict) -> str:
    rows = []
    for r in ns["rows"]:
        for label, key in NS_LABELS:
            if key not in r:
                continue
            default = " (default)" if r["dtype"] == ns["default_dtype"] else ""
            others = r[key].get("other_cores") or 0.0
            note = f"CONTENDED: other processes used {others:.1f} cores" if contended(others) else ""
            rows.append([label, r["dtype"] + default, fmt_ms(r[key]["ms"]), f"{r[key]['gflops']:.1f}", note])
    return markdown_table(["what", "dtype", "ms", "GFLOP/s", "note"], rows, "llrrl")


def report(data: dict) -> str:
    """The markdown section for RESULTS.md (also printed)."""
    lines = header(
        "## Optimizer step (benchmarks/bench_step.py)",
        data,
        run_line(data, ("muon-optimizer", "heavyball", "pytorch-optimizer")) + ".",
    )
    lines += [
        "Median wall time of `optimizer.step()` alone with fixed seeded gradients (same for all; restored "
        "untimed before every step); state = bytes of the tensors in `optimizer.state`; page faults = median minor page faults per step "
        "(fresh memory the kernel maps and zeroes inside the step). Every Muon "
        "implementation gets the Muon set of `hf_muon.route(model)`; the rest runs on its own AdamW or on "
        "torch AdamW. Raw numbers: `benchmarks/results/step.json`.",
        "",
        f"Models run: {', '.join(data['args']['models'])}"
        + (f"; repeats {data['args']['repeats']}" if data["args"].get("repeats") else "")
        + ".",
        "",
        "Peers not run: " + "; ".join(f"{k}: {v}" for k, v in data["unavailable_peers"].items()) + ".",
    ]
    size = " (--tiny config)" if data["args"]["tiny"] else ""
    for name, m in data["models"].items():
        lines += [
            "",
            f"### {name}{size}: {m['params']:,} params, {m['muon_params']:,} in {m['muon_tensors']} Muon tensors "
            f"(warmup {m['warmup']}, {m['repeats']} timed steps)",
            "",
            model_table(m),
        ]
    if data.get("ns_throughput"):
        ns = data["ns_throughput"]
        lines += [
            "",
            f"### Newton-Schulz throughput: {ns['model']} Muon matrices ({ns['matrices']} matrices, wide "
            f"shapes {ns['wide_shapes']}, {ns['steps']} steps, {ns['gflop_per_call']:.2f} GFLOP per call)",
            "",
            ns_table(ns),
        ]
        if "rect_shapes" in ns:
            lines += [
                "",
                f"GFLOP/s of every row are those of the standard {ns['steps']}-step iteration on the same "
                f"matrices (the rectangular rows: {ns['rect_gflop_per_call']:.2f} GFLOP on "
                f"{', '.join(ns['rect_shapes'])}), so they compare as time.",
            ]
    for name, m in data["models"].items():
        if m.get("ns_floor"):
            f = m["ns_floor"]
            lines += [
                "",
                f"### Newton-Schulz floor: {name} ({f['matrices']} matrices, wide shapes {f['wide_shapes']}, "
                f"{f['steps']} steps, {f['gflop_per_call']:.2f} GFLOP per call)",
                "",
                ns_table(f),
            ]
    # recomputed from the measurements, so a report regenerated from stored JSON shows today's targets
    args = data["args"]
    checks = targets(data["models"], data.get("ns_throughput"), args.get("device", "cpu"), bool(args.get("tiny")))
    lines += ["", "### Targets", ""] + target_lines(checks)
    return "\n".join(lines) + "\n"
