"""GSM8K (Cobbe et al. 2021): greedy generation and final-answer exact match.

Data: ``openai/gsm8k`` config ``main``, schema ``{question, answer}`` where ``answer`` ends with ``#### N``. Only the
``test`` split (1,319 rows) is mirrored, so the few-shot exemplars cannot come from ``train`` as in lm-eval.
Instead **the first** :data:`FEWSHOT_POOL` **(= 8) valid test rows are reserved as exemplars and are never scored,
whatever** ``num_fewshot`` **is** (0-shot and 5-shot runs score the same 1,311 questions, so they stay comparable).
The k exemplars are the first k rows of that pool, in file order. The Hub fallback uses the same convention.

Prompt (lm-eval ``gsm8k`` format: ``"Question: ...\\nAnswer: ..."``, exemplars with their full reference solution,
calculator annotations ``<<...>>`` kept, separated by blank lines)::

    Question: <q1>\\nAnswer: <full answer 1 ending in #### N>\\n\\n ... Question: <q>\\nAnswer:

Generation is greedy, at most ``max_new_tokens`` (default 256), stopping at EOS or any of :data:`STOP`
(lm-eval's ``"Question:"``, ``"</s>"``, ``"<|im_end|>"``, plus ``"\\n\\n"``: exemplar answers never contain a blank line,
so a blank line means the answer is over; this saves compute and changes no extracted answer in practice). The
score is :func:`hf_muon.lab.metrics.gsm8k_exact_match` (``#### N``, else "The answer is N", else the last number;
numeric comparison). ``limit`` = the first N scored rows (after the reserved pool).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..metrics import extract_answer, extract_reference, gsm8k_match, normalize_number
from .generation import generate_until
from .sources import HubSpec, MalformedRow, load_rows, need_str, task_result

TEST_FILE = "benchmarks/gsm8k/test.jsonl"
HUB = HubSpec("openai/gsm8k", "main", "test")
FEWSHOT_POOL = 8
STOP = ("Question:", "</s>", "<|im_end|>", "\n\n")


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


def load(data_dir=None, limit: int | None = None):
    """``(exemplar pool, scored rows, report)``: the first :data:`FEWSHOT_POOL` valid rows are the pool."""
    rows, report = load_rows("gsm8k", parse_row, data_dir=data_dir, rel_path=TEST_FILE, hub=HUB)
    pool, scored = rows[:FEWSHOT_POOL], rows[FEWSHOT_POOL:]
    return pool, (scored if limit is None else scored[:limit]), report


def evaluate_gsm8k(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    num_fewshot: int = 5,
    max_new_tokens: int = 256,
    stop: tuple[str, ...] = STOP,
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """GSM8K ``exact_match`` + the common keys; see the module docstring for the protocol."""
    if not 0 <= num_fewshot <= FEWSHOT_POOL:
        raise ValueError(f"num_fewshot must be in 0..{FEWSHOT_POOL} (the reserved exemplar pool), got {num_fewshot}")
    pool, rows, report = load(data_dir, limit)
    shots = pool[:num_fewshot]
    prompts = [build_prompt(ex["question"], shots) for ex in rows]
    gens = generate_until(model, tokenizer, prompts, stop=stop, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          max_length=max_length, accelerator=accelerator, progress=progress, desc="gsm8k")
    preds = [g[0] for g in gens]
    hits = [gsm8k_match(p, ex["answer"]) for p, ex in zip(preds, rows)]
    metrics = {"exact_match": sum(hits) / len(hits) if hits else 0.0}
    config = {"num_fewshot": len(shots), "fewshot_pool": FEWSHOT_POOL, "max_new_tokens": max_new_tokens,
              "stop": list(stop)}
    samples = None
    if log_samples:
        samples = [{"question": ex["question"], "generation": p, "extracted": extract_answer(p),
                    "reference": extract_reference(ex["answer"]), "correct": h}
                   for ex, p, h in zip(rows, preds, hits)]
    return task_result(metrics, n_scored=len(rows), reports=[report], config=config, samples=samples)


__all__ = ["FEWSHOT_POOL", "STOP", "build_prompt", "evaluate_gsm8k", "load", "parse_row"]
