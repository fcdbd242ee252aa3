"""GSM8K final-answer exact match: pure functions (no evaluate / datasets import).

Definitions
-----------
* **Reference**: the number after the last ``####`` of a GSM8K ``answer`` field (``"... #### 18"``). A reference
  without ``####`` is taken as the bare answer itself (``"18"``), so callers may pass either form.
* **Prediction** (:func:`extract_answer`), in this order of preference:

  1. the first ``#### N`` in the generation (lm-evaluation-harness ``gsm8k`` "strict-match" filter: regex on
     ``#### ``, first match);
  2. the first ``The answer is N`` (case-insensitive; the chain-of-thought exemplar format of Wei et al. 2022 and
     lm-eval's ``gsm8k-cot``);
  3. otherwise the **last** number anywhere in the text (lm-eval "flexible-extract": ``group_select: -1``).

* **Number normalisation** (:func:`normalize_number`): drop ``$``, ``%``, thousands commas and spaces, and a trailing
  ``.``; parse as a :class:`~decimal.Decimal` so ``"1,000"``, ``"1000"`` and ``"1000.0"`` are all equal and
  ``"0.5" == ".5"``. Equality is numeric (``Decimal`` compares exactly, no float rounding). A string that does
  not parse is compared as normalised text.
* ``exact_match`` is the mean over examples of ``1`` if the two normalised numbers are equal, else ``0``; a
  generation with no number scores ``0``.

Conventions follow lm-evaluation-harness ``tasks/gsm8k`` (its ``exact_match`` ignores ``,`` ``$`` and a trailing
``.``); here the comparison is numeric, so ``"18.00"`` also matches ``"18"``.
"""

from __future__ import annotations

import re
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


__all__ = [
    "answers_match",
    "extract_answer",
    "extract_reference",
    "gsm8k_exact_match",
    "gsm8k_match",
    "normalize_number",
]
