"""Knob metadata: how a :class:`~hf_muon.config.MuonConfig` field declares, checks and parses its value.

A knob is a dataclass field whose metadata holds its ``kind`` (float | int | bool | choice | text | regex |
ns_steps | coefficients | betas), its valid range or choices, its one-line doc and its ``--optim_args`` key.
The functions here work on that metadata (``m``) alone, so the same rules validate a ``MuonConfig``, a
hand-built param group and an ``--optim_args`` string; ``config.py`` keeps the fields themselves.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any

from .ns.coefficients import PRESETS
from .ns.schedule import parse_schedule

_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}


def knob(
    default,
    doc: str,
    kind: str,
    *,
    scope: str = "group",
    choices=None,
    lo=None,
    hi=None,
    lo_open: bool = False,
    hi_open: bool = False,
    optional: bool = False,
    optim_arg: str | None | bool = True,
):
    """A MuonConfig field; ``optim_arg`` is the ``--optim_args`` key (True: the field name; None: not one)."""
    meta = dict(
        doc=doc,
        kind=kind,
        scope=scope,
        choices=choices,
        lo=lo,
        hi=hi,
        lo_open=lo_open,
        hi_open=hi_open,
        optional=optional,
        optim_arg=optim_arg,
    )
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def reject_unknown(
    keys,
    valid,
    *,
    what: str = "unknown key",
    after: str = "",
    listing: str = "valid keys",
    error: type[Exception] = ValueError,
) -> None:
    """The one unknown-key error: ``{what} 'key'{after}; {listing}: a, b, c`` for the first (sorted) key of ``keys``
    not in ``valid``, which are listed sorted. Nothing happens when every key is valid."""
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        raise error(f"{what} {unknown[0]!r}{after}; {listing}: {', '.join(sorted(valid))}")


def range_text(m) -> str:
    lo = "-inf" if m["lo"] is None else m["lo"]
    hi = "inf" if m["hi"] is None else m["hi"]
    return f"{'(' if m['lo_open'] else '['}{lo}, {hi}{')' if m['hi_open'] or m['hi'] is None else ']'}"


_KIND_TEXT = {
    "bool": "true, false",
    "ns_steps": "an int in [0, 100], auto, last<k>:<steps>[:<default>]",
    "coefficients": f"{', '.join(PRESETS)}, or a:b:c triples joined by ;",
    "betas": "two floats in [0, 1)",
}


def valid_text(m) -> str:
    """Human-readable valid values of a knob (for errors and the README table)."""
    kind = m["kind"]
    if kind == "choice":
        text = ", ".join(map(str, m["choices"]))
    elif kind in ("float", "int"):
        text = f"{kind} in {range_text(m)}"
    else:
        text = _KIND_TEXT.get(kind, "a regular expression")
    return text + (", none" if m["optional"] else "")


# ---------------------------------------------------------------------------------------- checking by kind
# Each checker gets (name, m, value, where, bad) and returns the normalised value or raises.


def _check_choice(name, m, value, where, bad):
    if value not in m["choices"]:
        raise bad
    return value


def _check_bool(name, m, value, where, bad):
    if not isinstance(value, bool):
        raise bad
    return value


def _check_number(name, m, value, where, bad):
    kind = m["kind"]
    if kind == "float" and type(value).__name__ == "Tensor" and value.numel() == 1:  # a tensor lr
        _check_number(name, m, float(value), where, bad)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "int" and not isinstance(value, int)):
        raise bad
    x, lo, hi = float(value), m["lo"], m["hi"]
    below = lo is not None and (x <= lo if m["lo_open"] else x < lo)
    above = hi is not None and (x >= hi if m["hi_open"] else x > hi)
    if x != x or below or above:
        raise ValueError(f"{where}{name}={value!r} is out of range {range_text(m)}")
    return value


def _check_betas(name, m, value, where, bad):
    try:
        b = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise bad from None
    if len(b) != 2 or not all(0.0 <= x < 1.0 for x in b):
        raise bad
    return b


def _check_regex(name, m, value, where, bad):
    if not isinstance(value, (str, list, tuple)):
        raise bad
    for pat in [value] if isinstance(value, str) else value:
        try:
            re.compile(pat)
        except re.error as e:
            raise ValueError(f"{where}invalid routing regex {pat!r} for {name}: {e}") from None
    return value


def _check_ns_steps(name, m, value, where, bad):
    try:
        spec = parse_schedule(value)
    except ValueError as e:
        raise ValueError(f"{where}{e}") from None
    if isinstance(spec, int) and not 0 <= spec <= 100:
        raise ValueError(f"{where}{name}={value!r} is out of range [0, 100]")
    return spec if isinstance(spec, int) else value  # schedules are resolved per parameter by param_groups


def _check_coefficients(name, m, value, where, bad):
    from .ns.coefficients import schedule

    try:
        schedule(value, 1)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}{name}: {e}") from None
    return value


_CHECKERS = {
    "choice": _check_choice,
    "bool": _check_bool,
    "float": _check_number,
    "int": _check_number,
    "betas": _check_betas,
    "regex": _check_regex,
    "ns_steps": _check_ns_steps,
    "coefficients": _check_coefficients,
}


def check_value(name: str, m, value, where: str = "") -> Any:
    """Validate (and normalise) one value of the knob ``name`` with metadata ``m``; ``ValueError`` names it."""
    if value is None and m["optional"]:
        return None
    bad = ValueError(f"{where}{name}={value!r} is not valid; valid: {valid_text(m)}")
    return _CHECKERS[m["kind"]](name, m, value, where, bad)


# ---------------------------------------------------------------------------------------- parsing strings
def _parse_coefficients(m, text, label):
    if text in PRESETS or text in ("polar-express", "polarexpress"):
        return text
    try:
        steps = [[float(x) for x in part.split(":")] for part in text.split(";") if part]
    except ValueError:
        steps = []
    if not steps or any(len(t) != 3 for t in steps):
        raise ValueError(f"{label}={text!r} is not valid; valid values: {valid_text(m)}")
    return steps


def _parse(name, m, text, label):
    kind = m["kind"]
    if kind == "bool":
        s = text.lower()
        if s not in _TRUE | _FALSE:
            raise ValueError(f"{label}={text!r} is not a boolean; valid values: true, false")
        return s in _TRUE
    if kind in ("float", "int"):
        try:
            value = (float if kind == "float" else int)(text)
        except ValueError:
            raise ValueError(f"{label}={text!r} is not a valid {kind}") from None
        return check_value(name, m, value)
    if kind == "coefficients":
        return _parse_coefficients(m, text, label)
    out = check_value(name, m, text)
    if kind == "ns_steps" and isinstance(out, dict):  # a {regex: steps} map cannot be written in optim_args
        raise ValueError
    return out


def parse_value(name: str, m, text: str, label: str | None = None) -> Any:
    """A knob's value from a string (``--optim_args``), checked; errors name ``label`` and the valid values."""
    label = label or name
    if m["optional"] and text.lower() in ("none", "null", ""):
        return None
    try:
        return _parse(name, m, text, label)
    except ValueError as e:
        msg = str(e)
        if msg.startswith(label):
            raise
        if "out of range" in msg:
            raise ValueError(f"{label}={text!r} is out of range{msg.split('out of range', 1)[1]}") from None
        raise ValueError(f"{label}={text!r} is not valid; valid values: {valid_text(m)}") from None


def split_optim_args(optim_args) -> dict:
    """``{key: value}`` from transformers' ``optim_args`` (a dict, or the raw ``"k=v,k=v"`` string)."""
    if optim_args is None:
        return {}
    if isinstance(optim_args, dict):
        return optim_args
    items = {}
    for item in str(optim_args).replace(" ", "").split(","):
        if not item:
            continue
        if item.count("=") != 1:
            raise ValueError(f"optim_args item {item!r} must look like key=value")
        k, v = item.split("=")
        items[k] = v
    return items
