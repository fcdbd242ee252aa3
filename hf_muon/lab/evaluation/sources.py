"""Benchmark rows from the local mirror (or the Hub), with malformed rows counted and skipped, never fatal.

Every task reads its data in the **Hub schema** from one of two places, then runs the same parsing code:

* a local mirror file ``<data_dir>/<relative path>`` (JSON Lines, optionally ``.gz``) when ``data_dir`` is given or
  ``$HF_MUON_DATA`` is set (:func:`hf_muon.lab.data.resolve_data_dir`). A data dir that lacks the file is an error naming
  the path, never a silent download;
* otherwise ``datasets.load_dataset(<hub name>, <config>, split=...)`` (same schema, same parser after loading).

A row that is not valid JSON, or that the task's parser rejects (missing field, wrong type, gold index out of range,
...), is counted in a :class:`LoadReport` and skipped; a warning names the first few. Parsers signal a bad row by
raising :class:`MalformedRow` (``KeyError`` / ``TypeError`` / ``ValueError`` from a parser count the same way).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import DATA_ENV, resolve_data_dir

logger = logging.getLogger("hf_muon.lab.evaluation")

MAX_REASONS = 10


class MalformedRow(ValueError):
    """A row that does not fit the task's schema; it is counted and skipped."""


@dataclass(frozen=True)
class HubSpec:
    """Where the same data lives on the Hub: ``load_dataset(name, config, split=split)``.

    ``max_rows`` streams only the first rows (for huge datasets whose mirror is a head sample)."""

    name: str
    config: str | None
    split: str
    max_rows: int | None = None


@dataclass
class LoadReport:
    """What was read: ``rows`` seen, ``malformed`` skipped (with up to 10 ``reasons``), and the ``source``."""

    task: str
    source: str
    rows: int = 0
    malformed: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.malformed += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{where}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.rows, "malformed": self.malformed, "reasons": list(self.reasons)}

    def warn(self) -> None:
        if self.malformed:
            logger.warning(
                "%s: skipped %d malformed of %d rows from %s; first: %s",
                self.task,
                self.malformed,
                self.rows,
                self.source,
                "; ".join(self.reasons[:3]),
            )


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed object or the JSONDecodeError)`` for each non-blank line; ``.gz`` is decompressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, e


def iter_hub(spec: HubSpec) -> Iterator[tuple[int, Any]]:
    """``(row number, row dict)`` from ``datasets.load_dataset`` (streaming when ``spec.max_rows`` is set)."""
    from datasets import load_dataset

    if spec.max_rows is not None:
        ds = load_dataset(spec.name, spec.config, split=spec.split, streaming=True).take(spec.max_rows)
    else:
        ds = load_dataset(spec.name, spec.config, split=spec.split)
    for i, row in enumerate(ds):
        yield i, row


def local_file(data_dir, rel_path: str) -> Path | None:
    """``<data_dir>/<rel_path>`` when a data dir is configured (raises if that file is missing), else ``None``."""
    root = resolve_data_dir(data_dir)
    if root is None:
        return None
    path = root / rel_path
    if not path.is_file():
        hint = "" if root.is_dir() else f" (the data dir {root} does not exist)"
        raise FileNotFoundError(
            f"benchmark file not found: expected {path}{hint}. Point data_dir / ${DATA_ENV} at the shared data "
            f"mirror, or pass data_dir=None with ${DATA_ENV} unset to load the dataset from the Hub."
        )
    return path


def load_rows(
    task: str,
    parse: Callable[[Any], Any],
    *,
    data_dir=None,
    rel_path: str,
    hub: HubSpec | None,
    local: bool = True,
) -> tuple[list[Any], LoadReport]:
    """All rows ``parse`` accepts, in file order, and the :class:`LoadReport` of what was skipped.

    ``hub=None`` marks data that exists only in the local mirror (an error when no data dir is configured)."""
    path = local_file(data_dir, rel_path) if local else None  # local=False: always the Hub
    if path is not None:
        rows, where, source = iter_jsonl(path), "line", str(path)
    elif hub is None:
        raise ValueError(f"{task}: {rel_path} exists only in the local data mirror; pass data_dir or set ${DATA_ENV}")
    else:
        rows, where = iter_hub(hub), "row"
        source = f"hub:{hub.name}" + (f"/{hub.config}" if hub.config else "") + f"[{hub.split}]"
    report = LoadReport(task=task, source=source)
    out = []
    for n, row in rows:
        report.rows += 1
        if isinstance(row, Exception):
            report.skip(f"{where} {n}", f"not valid JSON ({row.msg})")
            continue
        try:
            out.append(parse(row))
        except (MalformedRow, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            report.skip(f"{where} {n}", f"{type(e).__name__}: {e}")
    report.warn()
    return out, report


def need_str(row: Any, key: str, *, allow_empty: bool = False) -> str:
    """``row[key]`` as a string, or :class:`MalformedRow`."""
    if not isinstance(row, dict):
        raise MalformedRow(f"expected a JSON object, got {type(row).__name__}")
    value = row.get(key)
    if not isinstance(value, str):
        raise MalformedRow(f"field {key!r} missing or not a string")
    if not allow_empty and not value.strip():
        raise MalformedRow(f"field {key!r} is empty")
    return value


def task_result(
    metrics: dict[str, Any],
    *,
    n_scored: int,
    reports: list[LoadReport],
    config: dict[str, Any],
    samples: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The common result layout of every task: its metrics, then ``n_scored``, ``n_malformed``, ``data`` (one
    :meth:`LoadReport.as_dict` per file read), ``config`` (the settings used) and, when requested, ``samples``."""
    out = dict(metrics)
    out["n_scored"] = int(n_scored)
    out["n_malformed"] = sum(r.malformed for r in reports)
    out["data"] = [r.as_dict() for r in reports]
    out["config"] = dict(config)
    if samples is not None:
        out["samples"] = samples
    return out


__all__ = [
    "HubSpec",
    "LoadReport",
    "MalformedRow",
    "iter_hub",
    "iter_jsonl",
    "load_rows",
    "local_file",
    "need_str",
    "task_result",
]
