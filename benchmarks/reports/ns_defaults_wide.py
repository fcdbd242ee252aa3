"""bench_ns_defaults.py --wide's report: the default (Gram NS on 256×688 in bf16) against standard NS, convergence
over seeds at llama-7.4M's matrix shapes. Same tables and targets as :mod:`benchmarks.reports.ns_defaults`."""

from __future__ import annotations

from . import ns_defaults

NAME = "ns_defaults_wide"
SECTION = "ns_defaults_wide"
TITLE = (
    "## Default Newton-Schulz at llama-7.4M's shapes: Gram (auto) vs standard, convergence "
    "(benchmarks/bench_ns_defaults.py --wide)"
)
summarize = ns_defaults.summarize
targets = ns_defaults.targets


def report(data: dict) -> str:
    return ns_defaults.report(data, TITLE)
