"""GSM8K final-answer scoring: pure functions (no evaluate / datasets / numpy import).

Two families of definitions live here.

lm-evaluation-harness ``gsm8k`` (the primary metrics; lm-eval 0.4.13, ``tasks/gsm8k/gsm8k.yaml`` v3.0)
------------------------------------------------------------------------------------------------------
The task has two filter pipelines, each followed by ``take_first`` (one generation per question), and one metric,
``exact_match`` with ``ignore_case: true``, ``ignore_punctuation: false`` and
``regexes_to_ignore: [",", "\\$", "(?s).*#### ", "\\.$"]``, applied to the filtered generation and to the whole
reference ``answer`` field alike (so the reference reduces to the text after its last ``"#### "``):

* ``strict-match``: ``regex`` filter ``#### (\\-?[0-9\\.\\,]+)`` (group_select 0: the **first** match; a space after
  ``####`` is required, no ``$``), fallback ``"[invalid]"`` (:data:`STRICT_PATTERN`, :func:`strict_extract`);
* ``flexible-extract``: ``regex`` filter ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` with ``group_select: -1`` (the **last**
  match, first non-empty group), fallback ``"[invalid]"`` (:data:`FLEXIBLE_PATTERN`, :func:`flexible_extract`).

:func:`regex_filter` is ``lm_eval.filters.extraction.RegexFilter`` on one string and :func:`harness_exact_match` is
``lm_eval.api.metrics.exact_match_hf_evaluate`` on one pair (string equality after the ignores: ``"18.00"`` does
*not* match ``"18"``). :func:`gsm8k_harness_scores` gives both metrics, named ``"strict-match"`` and
``"flexible-extract"`` as lm-eval names its filters.

hf_muon's lenient match (an extra metric, ``numeric_match``)
------------------------------------------------------------
* **Reference**: the number after the last ``####`` of a GSM8K ``answer`` field (``"... #### 18"``). A reference
  without ``####`` is taken as the bare answer itself (``"18"``), so callers may pass either form.
* **Prediction** (:func:`extract_answer`), in this order of preference: the first ``#### N`` (``####42`` and
  ``#### $42`` accepted); else the first ``The answer is N`` (case-insensitive, the chain-of-thought format of
  Wei et al. 2022); else the **last** number anywhere in the text.
* **Number normalisation** (:func:`normalize_number`): drop ``$``, ``%``, thousands commas and spaces, and a trailing
  ``.``; parse as a :class:`~decimal.Decimal` so ``"1,000"``, ``"1000"`` and ``"1000.0"`` are all equal and
  ``"0.5" == ".5"``. Equality is numeric (``Decimal`` compares exactly, no float rounding). A string that does
  not parse is compared as normalised text.
* ``numeric_match`` (:func:`gsm8k_exact_match` returns it under its historical key ``exact_match``) is the mean over
  examples of ``1`` if the two normalised numbers are equal, else ``0``.

This lenient score is **not** lm-eval's GSM8K number; report ``strict-match`` / ``flexible-extract`` next to
published results.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

# A number as people write it: optional sign and currency, thousands groups *or* plain digits, optional
# decimals, optional percent ("-$1,234.50", "50%", ".5"). "1,2,3" is three numbers: commas only count inside
# proper 3-digit groups.
_NUM_BODY = r"-?\$?\s?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)%?"
_NUMBER_RE = re.compile(r"(?<![\w.])(" + _NUM_BODY + ")")
_HASH_RE = re.compile(r"####\s*(" + _NUM_BODY + ")")
_THE_ANSWER_RE = re.compile(r"the answer is[:\s]*(" + _NUM_BODY + ")", re.IGNORECASE)


def normalize_number(text: str | None) -> Decimal | str | None:
    """``text`` as a :class:`Decimal` after stripping ``$ , % whitespace`` and a trailing ``.``.

    Returns the cleaned string when it is not a number, and ``None`` for ``None`` / empty input.
    """
    if text is None:
        return None
    s = str(text).strip()
    s = s.replace("$", "").replace(",", "").replace("%", "").replace(" ", "")
    s = s.rstrip(".")
    if not s:
        return None
    try:
        value = Decimal(s)
    except InvalidOperation:
        return s.lower()
    if not value.is_finite():
        return s.lower()
    return value


def extract_answer(generation: str | None) -> str | None:
    """The final-answer string of a model generation (see the module docstring for the order); ``None`` if none."""
    if not generation:
        return None
    m = _HASH_RE.search(generation)
    if m:
        return m.group(1).strip()
    m = _THE_ANSWER_RE.search(generation)
    if m:
        return m.group(1).strip()
    nums = _NUMBER_RE.findall(generation)
    return nums[-1].strip() if nums else None


def extract_reference(answer: str | None) -> str | None:
    """The gold number of a GSM8K ``answer`` field: the text after the last ``####``, else the whole string."""
    if answer is None:
        return None
    answer = str(answer)
    if "####" in answer:
        answer = answer.rsplit("####", 1)[1]
    answer = answer.strip()
    return answer or None


def answers_match(prediction: str | None, reference: str | None) -> bool:
    """Whether an extracted prediction equals a reference number after :func:`normalize_number`."""
    p, r = normalize_number(prediction), normalize_number(reference)
    if p is None or r is None:
        return False
    if isinstance(p, Decimal) and isinstance(r, Decimal):
        return p == r
    return str(p) == str(r)


def gsm8k_match(generation: str | None, reference: str | None) -> bool:
    """One example: does the generation's final answer equal the reference (``#### N`` answer or bare N)?"""
    return answers_match(extract_answer(generation), extract_reference(reference))


def gsm8k_exact_match(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``{"exact_match": mean of gsm8k_match}`` over aligned lists (``0.0`` for empty input)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return {"exact_match": 0.0}
    hits = sum(gsm8k_match(p, r) for p, r in zip(predictions, references))
    return {"exact_match": hits / len(predictions)}


# ------------------------------------------------------------------------------------ lm-evaluation-harness gsm8k
STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
FALLBACK = "[invalid]"
#: the ``exact_match`` keyword arguments of lm-eval's gsm8k.yaml metric_list
EXACT_MATCH_KWARGS = {
    "regexes_to_ignore": (",", "\\$", "(?s).*#### ", "\\.$"),
    "ignore_case": True,
    "ignore_punctuation": False,
}
#: filter name -> (regex_pattern, group_select), in lm-eval's filter_list order
HARNESS_FILTERS = {"strict-match": (STRICT_PATTERN, 0), "flexible-extract": (FLEXIBLE_PATTERN, -1)}


def regex_filter(text, pattern: str, group_select: int = 0, fallback: str = FALLBACK) -> str:
    """``lm_eval.filters.extraction.RegexFilter`` on one response: ``re.findall``, the ``group_select``-th match,
    its first non-empty group when the pattern has several, stripped; ``fallback`` when nothing matches."""
    if not isinstance(text, str):
        text = ""
    matches = re.findall(pattern, text)
    if not matches:
        return fallback
    match = matches[group_select]
    if isinstance(match, tuple):
        groups = [m for m in match if m]
        match = groups[0] if groups else fallback
    return match.strip()


def strict_extract(text) -> str:
    """lm-eval gsm8k ``strict-match`` filter output (the first ``#### N``, else ``"[invalid]"``)."""
    return regex_filter(text, STRICT_PATTERN, 0)


def flexible_extract(text) -> str:
    """lm-eval gsm8k ``flexible-extract`` filter output (the last number-like run, else ``"[invalid]"``)."""
    return regex_filter(text, FLEXIBLE_PATTERN, -1)


def _np_str(s: str) -> str:
    return str(s).rstrip("\x00")  # numpy's fixed-width str arrays drop trailing NULs


def harness_exact_match(
    prediction: str,
    reference: str,
    *,
    regexes_to_ignore: Sequence[str] | None = None,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    ignore_numbers: bool = False,
) -> bool:
    """``lm_eval.api.metrics.exact_match_hf_evaluate`` for one (prediction, reference) pair: each regex of
    ``regexes_to_ignore`` removed from both (in order), then lower-casing, ``string.punctuation`` / digit removal,
    then plain string equality."""
    p, r = _np_str(prediction), _np_str(reference)
    for pattern in regexes_to_ignore or ():
        p, r = _np_str(re.sub(pattern, "", p)), _np_str(re.sub(pattern, "", r))
    if ignore_case:
        p, r = p.lower(), r.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        p, r = p.translate(table), r.translate(table)
    if ignore_numbers:
        table = str.maketrans("", "", string.digits)
        p, r = p.translate(table), r.translate(table)
    return p == r


def gsm8k_harness_match(generation: str, reference: str, filter_name: str = "strict-match") -> bool:
    """One example under lm-eval's gsm8k: ``filter_name`` ("strict-match" / "flexible-extract") applied to the
    generation, then ``exact_match`` (gsm8k.yaml kwargs) against the full reference ``answer`` field."""
    pattern, group = HARNESS_FILTERS[filter_name]
    return harness_exact_match(regex_filter(generation, pattern, group), reference, **EXACT_MATCH_KWARGS)


def gsm8k_harness_scores(generations: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``{"strict-match": mean, "flexible-extract": mean}`` (lm-eval gsm8k) over aligned lists (0.0 when empty)."""
    if len(generations) != len(references):
        raise ValueError(f"{len(generations)} generations but {len(references)} references")
    out = {}
    for name in HARNESS_FILTERS:
        hits = [gsm8k_harness_match(g, r, name) for g, r in zip(generations, references)]
        out[name] = sum(hits) / len(hits) if hits else 0.0
    return out


__all__ = [
    "EXACT_MATCH_KWARGS",
    "FALLBACK",
    "FLEXIBLE_PATTERN",
    "HARNESS_FILTERS",
    "STRICT_PATTERN",
    "answers_match",
    "extract_answer",
    "extract_reference",
    "flexible_extract",
    "gsm8k_exact_match",
    "gsm8k_harness_match",
    "gsm8k_harness_scores",
    "gsm8k_match",
    "harness_exact_match",
    "normalize_number",
    "regex_filter",
    "strict_extract",
]
