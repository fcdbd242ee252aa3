"""ARC-Easy (Clark et al. 2018), 0-shot full-text choice scoring in the lm-evaluation-harness ``arc_easy`` format.

Data: ``allenai/ai2_arc`` config ``ARC-Easy``, schema ``{id, question, choices: {text[], label[]}, answerKey}``; the
mirror holds the full ``test`` (2,376) and ``validation`` (570) splits. Some rows have 3 or 5 choices and some use
labels ``"1".."4"`` instead of ``"A".."D"``; the gold index is ``choices.label.index(answerKey)``.

Prompt (lm-eval ``arc_easy``): context ``"Question: {question}\\nAnswer:"``, continuations ``" " + choice text``.
Results (:func:`hf_muon.lab.metrics.mc_accuracy`): ``acc`` = argmax of the summed log-likelihood; ``acc_norm`` = argmax of
log-likelihood / character length of the choice text (without the leading space), lm-eval's ``acc_norm``.
"""

from __future__ import annotations

from typing import Any

from ..metrics import mc_accuracy
from .loglik import loglikelihood
from .sources import HubSpec, MalformedRow, load_rows, need_str, task_result

FILES = {
    "test": "benchmarks/arc/ARC-Easy.test.hf_schema.jsonl",
    "validation": "benchmarks/arc/ARC-Easy.validation.hf_schema.jsonl",
}


def parse_row(row: Any) -> dict[str, Any]:
    """Validate one Hub-schema row: >= 2 non-empty string choices with matching labels, ``answerKey`` among them."""
    question = need_str(row, "question")
    choices = row.get("choices")
    if not isinstance(choices, dict):
        raise MalformedRow("'choices' must be an object {text: [...], label: [...]}")
    texts, labels = choices.get("text"), choices.get("label")
    if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels) or len(texts) < 2:
        raise MalformedRow("'choices.text' and 'choices.label' must be lists of equal length >= 2")
    if not all(isinstance(t, str) and t.strip() for t in texts) or not all(isinstance(x, str) for x in labels):
        raise MalformedRow("choice texts must be non-empty strings and labels strings")
    key = row.get("answerKey")
    if not isinstance(key, str) or key not in labels:
        raise MalformedRow(f"'answerKey' {key!r} is not one of the labels {labels}")
    return {"id": row.get("id"), "question": question, "choices": list(texts), "gold": labels.index(key)}


def build_prompt(ex: dict[str, Any]) -> str:
    return f"Question: {ex['question']}\nAnswer:"


def load(data_dir=None, split: str = "test", limit: int | None = None):
    if split not in FILES:
        raise ValueError(f"ARC-Easy split must be one of {sorted(FILES)}, got {split!r}")
    rows, report = load_rows("arc_easy", parse_row, data_dir=data_dir, rel_path=FILES[split],
                             hub=HubSpec("allenai/ai2_arc", "ARC-Easy", split))
    return (rows if limit is None else rows[:limit]), report


def evaluate_arc_easy(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    split: str = "test",
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """ARC-Easy ``acc`` and ``acc_norm`` (0-shot) + the common keys; ``limit`` = first N valid rows of ``split``."""
    rows, report = load(data_dir, split, limit)
    requests, spans = [], []
    for ex in rows:
        start = len(requests)
        requests.extend((build_prompt(ex), " " + c) for c in ex["choices"])
        spans.append((start, len(requests)))
    results = loglikelihood(model, tokenizer, requests, batch_size=batch_size, max_length=max_length,
                            accelerator=accelerator, progress=progress, desc="arc_easy")
    lls = [[r.logprob for r in results[a:b]] for a, b in spans]
    golds = [ex["gold"] for ex in rows]
    lengths = [[float(len(c)) for c in ex["choices"]] for ex in rows]
    metrics = mc_accuracy(lls, golds, choice_lengths=lengths) if rows else {"acc": 0.0, "acc_norm": 0.0}
    samples = None
    if log_samples:
        samples = [{"id": ex["id"], "prompt": build_prompt(ex), "choices": ex["choices"], "loglikelihoods": lls[j],
                    "gold": golds[j]} for j, ex in enumerate(rows)]
    return task_result(metrics, n_scored=len(rows), reports=[report], config={"split": split, "num_fewshot": 0},
                       samples=samples)


__all__ = ["build_prompt", "evaluate_arc_easy", "load", "parse_row"]
