"""bench_startup.py's report: what the ``--optim muon`` startup hook adds to a new interpreter."""

from __future__ import annotations

from .format import header, markdown_table, run_line, target_lines

NAME = "startup"
SECTION = "startup"
TARGET_MS = 2.0


def targets(data: dict) -> list[dict]:
    r = data["results"]["python -c pass"]
    added = r["on"] - r["off"]
    return [
        {
            "target": f"startup hook adds ≤ {TARGET_MS:g} ms to `python -c pass`",
            "measured": f"{added:+.2f} ms (median {r['on']:.1f} vs {r['off']:.1f} ms; hook module import "
            f"{data['hook_import_ms_median']:.2f} ms by -X importtime)",
            "status": "MET" if added <= TARGET_MS else "NOT MET",
        }
    ]


def report(data: dict) -> str:
    rows = [
        [name, f"{v['off']:.1f}", f"{v['on']:.1f}", f"{v['on'] - v['off']:+.2f}"] for name, v in data["results"].items()
    ]
    lines = header("## Startup hook cost (new interpreter, CPU)", data, run_line(data) + ".") + [
        f"`python benchmarks/bench_startup.py` — a fresh venv with hf_muon installed from a wheel of this repo; "
        f"median wall time of a new interpreter over {data['config']['repeats']} interleaved runs per state "
        "(hook off = the .pth file renamed away).",
        "",
        markdown_table(["command", "hook off ms", "hook on ms", "added ms"], rows, "lrrr"),
        "",
        *target_lines(data["targets"]),
    ]
    return "\n".join(lines) + "\n"
