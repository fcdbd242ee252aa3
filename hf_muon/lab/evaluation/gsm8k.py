"""GSM8K (Cobbe et al. 2021), exactly as lm-evaluation-harness 0.4.13 ``gsm8k`` (``tasks/gsm8k/gsm8k.yaml``, v3.0).

Data: ``openai/gsm8k`` config ``main``, schema ``{question, answer}`` where ``answer`` ends with ``#### N``. The
mirror holds both splits in full: ``test`` (1,319 rows, **all scored**) and ``train`` (7,473 rows, the few-shot
pool: ``fewshot_split: train``).

Protocol (each item is lm-eval's, the YAML key in parentheses):

* prompt (``doc_to_text``, ``doc_to_target: "{{answer}}"``, ``target_delimiter: " "``, ``fewshot_delimiter:
  "\\n\\n"``, no description)::

      Question: <train q>\\nAnswer: <full train answer, calculator annotations <<..>> kept, ending in #### N>\\n\\n
      ... (k exemplars) ...
      Question: <test q>\\nAnswer:

* few-shot (``num_fewshot: 5``, no ``fewshot_config`` -> the ``default`` random sampler): one
  ``random.Random(1234)`` stream, test document ``i`` gets the ``i``-th ``rnd.sample(train, k)`` draw
  (:func:`~hf_muon.lab.evaluation.harness.fewshot_draws`); ``limit`` = the first N test rows, which keep the
  exemplars they have in a full run;
* generation (``generation_kwargs``): greedy (``do_sample: false``), at most ``max_new_tokens`` = 256 (HFLM's
  ``max_gen_toks``), stopping at EOS or any of :data:`STOP` = ``until: ["Question:", "</s>", "<|im_end|>"]``, cut
  before the stop string; BOS per the tokenizer default (``add_bos`` overrides);
* metrics (``filter_list`` + ``metric_list``, :mod:`hf_muon.lab.metrics.gsm8k_exact_match.core`): ``strict-match``
  (first ``#### N``) and ``flexible-extract`` (last number), each ``take_first`` then ``exact_match`` with
  ``ignore_case``, ``regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]``. These two are the primary,
  lm-eval-comparable numbers. ``numeric_match`` is hf_muon's lenient extra (``####N``, "The answer is N", numeric
  comparison); it is **not** an lm-eval number.

Rows whose ``answer`` has no numeric ``#### N`` are counted as malformed and skipped (the mirror has none).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..metrics import (
    extract_answer,
    extract_reference,
    flexible_extract,
    gsm8k_harness_match,
    gsm8k_match,
    normalize_number,
    strict_extract,
)
from .generation import generate_until
from .harness import FEWSHOT_SEED, fewshot_draws, protocol
from .sources import HubSpec, MalformedRow, load_rows, need_str, task_result

TEST_FILE = "benchmarks/gsm8k/test.jsonl"
TRAIN_FILE = "benchmarks/gsm8k/train.jsonl"
HUB = HubSpec("openai/gsm8k", "main", "test")
HUB_TRAIN = HubSpec("openai/gsm8k", "main", "train")
STOP = ("Question:", "</s>", "<|im_end|>")
NUM_FEWSHOT = 5
MAX_NEW_TOKENS = 256


def parse_row(row: Any) -> dict[str, Any]:
    """Validate one row: non-empty ``question`` and an ``answer`` whose text after ``####`` is a number."""
    question = need_str(row, "question")
    answer = need_str(row, "answer")
    if "####" not in answer:
        raise MalformedRow("'answer' has no '#### N' final answer")
    if not isinstance(normalize_number(extract_reference(answer)), Decimal):
        raise MalformedRow(f"'answer' final answer {extract_reference(answer)!r} is not a number")
    return {"question": question, "answer": answer}


def build_prompt(question: str, shots: list[dict[str, Any]]) -> str:
    parts = [f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots]
    parts.append(f"Question: {question}\nAnswer:")
    return "".join(parts)


def load(data_dir=None, limit: int | None = None, *, need_train: bool = True):
    """``(train pool, scored test rows, [test report, train report])``; ``limit`` = the first N test rows.

    ``need_train=False`` (0-shot) skips reading the train split (the pool is then empty)."""
    rows, report = load_rows("gsm8k", parse_row, data_dir=data_dir, rel_path=TEST_FILE, hub=HUB)
    reports = [report]
    pool: list[dict[str, Any]] = []
    if need_train:
        pool, train_report = load_rows("gsm8k:train", parse_row, data_dir=data_dir, rel_path=TRAIN_FILE, hub=HUB_TRAIN)
        reports.append(train_report)
    return pool, (rows if limit is None else rows[:limit]), reports


def fewshot_prompts(
    rows: list[dict[str, Any]], pool: list[dict[str, Any]], num_fewshot: int, seed: int = FEWSHOT_SEED
) -> list[str]:
    """The prompts lm-eval builds for ``rows`` (documents ``0..len(rows)-1`` of the test split)."""
    draws = fewshot_draws(pool, num_fewshot, len(rows), sampler="default", seed=seed)
    return [build_prompt(ex["question"], shots) for ex, shots in zip(rows, draws)]


def score_generations(generations: list[str], references: list[str]) -> tuple[dict[str, float], list[dict]]:
    """``(metrics, per-item records)`` for generations against GSM8K ``answer`` fields (see the module docstring)."""
    items = []
    for g, ref in zip(generations, references, strict=True):
        items.append(
            {
                "strict-match": float(gsm8k_harness_match(g, ref, "strict-match")),
                "flexible-extract": float(gsm8k_harness_match(g, ref, "flexible-extract")),
                "numeric_match": float(gsm8k_match(g, ref)),
                "filtered": {"strict-match": strict_extract(g), "flexible-extract": flexible_extract(g)},
            }
        )
    n = len(items)
    metrics = {
        k: (sum(it[k] for it in items) / n if n else 0.0) for k in ("strict-match", "flexible-extract", "numeric_match")
    }
    return metrics, items


def evaluate_gsm8k(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    num_fewshot: int = NUM_FEWSHOT,
    fewshot_seed: int = FEWSHOT_SEED,
    max_new_tokens: int = MAX_NEW_TOKENS,
    stop: tuple[str, ...] = STOP,
    add_bos: bool | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """GSM8K ``strict-match`` and ``flexible-extract`` (lm-eval) + ``numeric_match`` + the common keys."""
    pool, rows, reports = load(data_dir, limit, need_train=num_fewshot > 0)
    prompts = fewshot_prompts(rows, pool, num_fewshot, fewshot_seed)
    gens = generate_until(
        model,
        tokenizer,
        prompts,
        stop=stop,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_length=max_length,
        add_bos=add_bos,
        accelerator=accelerator,
        progress=progress,
        desc="gsm8k",
    )
    preds = [g[0] for g in gens]
    metrics, items = score_generations(preds, [ex["answer"] for ex in rows])
    config = {
        "num_fewshot": num_fewshot,
        "fewshot_split": "train",
        "fewshot_sampler": "default",
        "fewshot_seed": fewshot_seed,
        "max_new_tokens": max_new_tokens,
        "stop": list(stop),
        "do_sample": False,
        "add_bos": add_bos,
    }
    samples = None
    if log_samples:
        samples = [
            {
                "doc_id": j,
                "question": ex["question"],
                "prompt": prompts[j],
                "generation": p,
                "filtered": it["filtered"],
                "extracted": extract_answer(p),
                "reference": extract_reference(ex["answer"]),
                **{k: it[k] for k in ("strict-match", "flexible-extract", "numeric_match")},
            }
            for j, (ex, p, it) in enumerate(zip(rows, preds, items))
        ]
    out = task_result(metrics, n_scored=len(rows), reports=reports, config=config, samples=samples)
    out.update(protocol("gsm8k"))
    return out


__all__ = [
    "MAX_NEW_TOKENS",
    "NUM_FEWSHOT",
    "STOP",
    "build_prompt",
    "evaluate_gsm8k",
    "fewshot_prompts",
    "load",
    "parse_row",
    "score_generations",
]
