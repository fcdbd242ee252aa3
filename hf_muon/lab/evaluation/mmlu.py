"""MMLU (Hendrycks et al. 2021), k-shot letter choice, as lm-evaluation-harness 0.4.13 ``mmlu`` (the ``default``
variant: ``tasks/mmlu/default/_default_template_yaml`` v1.0 + one ``mmlu_<subject>.yaml`` per subject, group v2).

Data: ``cais/mmlu`` (config ``all``) schema ``{question, subject, choices[4], answer: int}``. The mirror holds the
full ``dev`` split (5 rows per subject, the few-shot pool) and the first 10 ``test`` rows of each of the 57 subjects.

Prompt (``description`` per subject, ``doc_to_text``, ``doc_to_choice: ["A", "B", "C", "D"]``, ``target_delimiter:
" "``, ``fewshot_delimiter: "\\n\\n"``; ``fewshot_split: dev`` with ``fewshot_config.sampler: first_n``)::

    The following are multiple choice questions (with answers) about high school biology.\\n\\n
    <dev question 1>\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: B\\n\\n      (k exemplars: the first k dev rows of
    ...                                                                   the *same subject*, in file order)
    <test question>\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:

The subject's underscores become spaces and the question is ``strip()``-ed. The four continuations " A", " B",
" C", " D" are scored by log-likelihood (:mod:`~hf_muon.lab.evaluation.loglik`; BOS per the tokenizer default, as
lm-eval's ``add_bos_token=None``; ``add_bos`` overrides); the prediction is the argmax (ties -> lowest letter).
``acc_norm`` would equal ``acc`` (all choices have one character) and is not reported. The YAML sets no
``num_fewshot`` (lm-eval's own default would be 0-shot); the default here is the published 5-shot protocol, i.e.
``lm_eval --tasks mmlu --num_fewshot 5``.

Results: ``acc`` (micro average over all scored questions, which equals lm-eval's size-weighted ``mmlu`` group
score), ``acc_macro`` (unweighted mean of per-subject accuracies) and ``acc_by_subject``. ``limit`` applies **per
subject** (the first ``limit`` test rows of each subject, like lm-eval's ``--limit`` on each ``mmlu_<subject>`` task).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..metrics import mc_accuracy, mc_predict
from .harness import protocol
from .loglik import loglikelihood
from .sources import HubSpec, MalformedRow, load_rows, need_str, task_result

TEST_FILE = "benchmarks/mmlu/test_first10_per_subject.hf_schema.jsonl"
DEV_FILE = "benchmarks/mmlu/dev.hf_schema.jsonl"
HUB_TEST = HubSpec("cais/mmlu", "all", "test")
HUB_DEV = HubSpec("cais/mmlu", "all", "dev")
LETTERS = ("A", "B", "C", "D")


def parse_row(row: Any) -> dict[str, Any]:
    """Validate one Hub-schema row: 4 string choices and an integer ``answer`` in ``0..3`` (a letter is accepted)."""
    question = need_str(row, "question")
    subject = need_str(row, "subject")
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) != 4 or not all(isinstance(c, str) for c in choices):
        raise MalformedRow("'choices' must be a list of 4 strings")
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip().upper() in LETTERS:
        answer = LETTERS.index(answer.strip().upper())
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < 4:
        raise MalformedRow(f"'answer' must be an integer in 0..3, got {answer!r}")
    return {"question": question, "subject": subject, "choices": list(choices), "answer": int(answer)}


def description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def format_question(ex: dict[str, Any]) -> str:
    """``"<question>\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:"``."""
    lines = [ex["question"].strip()] + [f"{letter}. {choice}" for letter, choice in zip(LETTERS, ex["choices"])]
    return "\n".join(lines) + "\nAnswer:"


def build_prompt(ex: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    """Description + k solved exemplars (each followed by a blank line) + the question, ending in ``"Answer:"``."""
    parts = [description(ex["subject"])]
    for shot in shots:
        parts.append(f"{format_question(shot)} {LETTERS[shot['answer']]}\n\n")
    parts.append(format_question(ex))
    return "".join(parts)


def load(data_dir=None, limit: int | None = None):
    """``(test examples, dev examples by subject, [test report, dev report])``; ``limit`` is per subject."""
    test, test_report = load_rows("mmlu", parse_row, data_dir=data_dir, rel_path=TEST_FILE, hub=HUB_TEST)
    dev, dev_report = load_rows("mmlu:dev", parse_row, data_dir=data_dir, rel_path=DEV_FILE, hub=HUB_DEV)
    if limit is not None:
        seen: dict[str, int] = defaultdict(int)
        kept = []
        for ex in test:
            if seen[ex["subject"]] < limit:
                seen[ex["subject"]] += 1
                kept.append(ex)
        test = kept
    pool: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in dev:
        pool[ex["subject"]].append(ex)
    return test, pool, [test_report, dev_report]


def evaluate_mmlu(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    num_fewshot: int = 5,
    add_bos: bool | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """MMLU accuracy; see the module docstring. Returns ``acc``, ``acc_macro``, ``acc_by_subject`` + common keys."""
    test, pool, reports = load(data_dir, limit)
    prompts = [build_prompt(ex, pool.get(ex["subject"], [])[:num_fewshot]) for ex in test]
    requests = [(p, f" {letter}") for p in prompts for letter in LETTERS]
    results = loglikelihood(
        model,
        tokenizer,
        requests,
        batch_size=batch_size,
        max_length=max_length,
        add_bos=add_bos,
        accelerator=accelerator,
        progress=progress,
        desc="mmlu",
    )
    lls = [[r.logprob for r in results[4 * j : 4 * j + 4]] for j in range(len(test))]
    golds = [ex["answer"] for ex in test]
    by_subject: dict[str, list[int]] = defaultdict(list)
    for j, ex in enumerate(test):
        by_subject[ex["subject"]].append(j)
    acc_by_subject = {
        s: mc_accuracy([lls[j] for j in idx], [golds[j] for j in idx])["acc"] for s, idx in sorted(by_subject.items())
    }
    metrics = {
        "acc": mc_accuracy(lls, golds)["acc"] if test else 0.0,
        "acc_macro": sum(acc_by_subject.values()) / len(acc_by_subject) if acc_by_subject else 0.0,
        "acc_by_subject": acc_by_subject,
    }
    short = sorted(s for s in by_subject if len(pool.get(s, [])) < num_fewshot)
    config = {
        "num_fewshot": num_fewshot,
        "fewshot_split": "dev",
        "fewshot_sampler": "first_n",
        "limit_per_subject": limit,
        "subjects": len(by_subject),
        "subjects_with_fewer_shots": short,
        "add_bos": add_bos,
    }
    samples = None
    if log_samples:
        samples = [
            {
                "subject": ex["subject"],
                "prompt": prompts[j],
                "loglikelihoods": lls[j],
                "gold": golds[j],
                "pred": mc_predict(lls[j]),
            }
            for j, ex in enumerate(test)
        ]
    out = task_result(metrics, n_scored=len(test), reports=reports, config=config, samples=samples)
    out.update(protocol("mmlu"))
    return out


__all__ = ["build_prompt", "description", "evaluate_mmlu", "format_question", "load", "parse_row"]
