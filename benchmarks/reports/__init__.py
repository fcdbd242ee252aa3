"""Reports: each benchmark's RESULTS.md section, written from its results JSON alone.

One module per benchmark (``step``, ``convergence``, ``scaling``, ``trainer``, ``distributed``, ``moe_routing``,
``startup``, ``variants``, ``ns_defaults``), each with
``NAME`` (its JSON is ``results/<NAME>.json``), ``SECTION`` (the RESULTS.md markers) and ``report(data)``;
some also derive summaries or draw plots from the same data. Because a report reads nothing but the JSON,
``python benchmarks/run_all.py --report-only`` (or ``--from-json`` on one script) regenerates RESULTS.md from
the committed results without measuring anything.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = (
    "step",
    "trainer",
    "distributed",
    "convergence",
    "scaling",
    "moe_routing",
    "variants",
    "startup",
    "ns_defaults",
)  # run_all.py order
# Reports a script writes besides its own under an option (bench_ns_defaults.py --wide), by script.
EXTRA = {"ns_defaults": ("ns_defaults_wide",)}


def module(name: str) -> ModuleType:
    """The report module of one benchmark."""
    extra = [e for names in EXTRA.values() for e in names]
    if name not in NAMES and name not in extra:
        raise ValueError(f"no report {name!r}; valid: {', '.join(NAMES + tuple(extra))}")
    return importlib.import_module(f"{__name__}.{name}")
