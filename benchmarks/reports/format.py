"""Report helpers: number formats, the header every section opens with, RESULTS.md sections, plotting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# JSON files and markdown tables are written as the research recipes write theirs (one implementation).
from hf_muon.lab.research import markdown_table, write_json  # noqa: F401


def fmt_ms(ms: float | None) -> str:
    """Milliseconds with precision that suits their size."""
    if ms is None:
        return "—"
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}×" if x < 10 else f"{x:,.1f}×"


def run_line(
    data: dict,
    extra_versions: Sequence[str] = (),
    busy: str = "numbers not comparable",
    contended: str = "other processes ran during timing (rows marked CONTENDED), numbers not comparable",
) -> str:
    """The "Run <date> on <machine> …; versions. Load at start …" sentence, plus the busy / contended warnings
    (no closing period: callers may go on)."""
    mach, ver, load = data["machine"], data["versions"], data["load"]
    versions = ", ".join(f"{k} {ver[k]}" for k in ("torch", "transformers", "hf_muon", *extra_versions))
    return (
        f"Run {data['date']} on {mach['cpu']} ({mach['cores']} cores, {mach['torch_threads']} torch threads"
        + (f", GPU {mach['gpu']['name']}" if mach.get("gpu") else "")
        + f"), device `{data['args']['device']}`; {versions}. Load at start {load['load1']:.2f} (1 min)"
        + (f" — **machine busy, {busy}**" if load.get("busy") else "")
        + (f" — **{contended}**" if data["contended"] else "")
    )


def cpu_line(machine: dict) -> str | None:
    """The CPU, its bf16 / AVX-512 / AMX flags, torch's CPU capability, threads and version (None for runs that did
    not record the checked flags)."""
    checked = machine.get("cpu_flags_checked")
    if not checked:
        return None
    have = set(machine["cpu_flags"])
    flags = ", ".join(f"{f} {'yes' if f in have else 'no'}" for f in checked)
    return (
        f"CPU: {machine['cpu']}; flags {flags}; torch CPU capability {machine['torch_cpu_capability']}, "
        f'{machine["torch_threads"]} torch threads, torch {machine["torch"]}; hf_muon `ns_dtype="auto"` '
        f"on this CPU: {machine['ns_auto_dtype_cpu']}."
    )


def header(title: str, data: dict, run: str | None = None) -> list[str]:
    """A section's opening lines: the title, the run sentence (when given) and the CPU line (when recorded)."""
    lines = [title, ""]
    if run is not None:
        lines += [run, ""]
    cpu = cpu_line(data["machine"])
    if cpu is not None:
        lines += [cpu, ""]
    return lines


def target_lines(targets: Sequence[dict]) -> list[str]:
    return [f"- {c['target']}: **{c['status']}** — {c['measured']}" for c in targets]


def update_markdown_section(path: Path, key: str, body: str, title: str = "# Benchmark results") -> None:
    """Replace the section between ``<!-- key:start -->`` and ``<!-- key:end -->`` (append if absent)."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = (
        path.read_text()
        if path.exists()
        else f"{title}\n\nWritten by the scripts in benchmarks/; sections are replaced on each run.\n"
    )
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def pyplot():
    """matplotlib's pyplot on the Agg backend, or the reason it is not available (a string)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"matplotlib not available ({e})"
    return plt
