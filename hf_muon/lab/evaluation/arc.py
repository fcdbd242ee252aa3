"""ARC-Easy and ARC-Challenge (Clark et al. 2018), full-text choice scoring, as lm-evaluation-harness 0.4.13
``arc_easy`` / ``arc_challenge`` (``tasks/arc/arc_easy.yaml``, v1.0; ``arc_challenge.yaml`` includes it).

Data: ``allenai/ai2_arc`` configs ``ARC-Easy`` / ``ARC-Challenge``, schema ``{id, question, choices: {text[],
label[]}, answerKey}``, mirrored as ``benchmarks/arc/<config>.<split>.hf_schema.jsonl``. The mirror holds ARC-Easy
``test`` (2,376) and ``validation`` (570); ARC-Challenge and the ``train`` splits are read when such a file exists
(a data dir without the file is an error naming it, never a download). Some rows have 3 or 5 choices and some use
labels ``"1".."4"`` instead of ``"A".."D"``; the gold index is ``choices.label.index(answerKey)``
(``doc_to_target``).

Protocol (lm-eval YAML keys in parentheses):

* prompt ``"Question: {question}\\nAnswer:"`` (``doc_to_text``), continuations ``" " + choice text``
  (``doc_to_choice: "{{choices.text}}"``, ``target_delimiter: " "``), scored by log-likelihood; BOS per the
  tokenizer default (lm-eval ``add_bos_token=None``), ``add_bos`` overrides;
* few-shot: the YAML sets no ``num_fewshot`` (-> 0, the default here). With ``num_fewshot=k > 0`` the exemplars
  come from ``train`` (``training_split``; no ``fewshot_split``/``fewshot_config`` -> the ``default`` random
  sampler, seed 1234: document ``i`` gets the ``i``-th ``random.Random(1234).sample(train, k)`` draw), each
  ``"Question: ..\\nAnswer: <gold choice text>\\n\\n"``;
* metrics (:func:`hf_muon.lab.metrics.mc_accuracy`): ``acc`` = argmax of the summed log-likelihood; ``acc_norm`` =
  argmax of log-likelihood / character length of the choice text (without the leading space), lm-eval's
  ``acc_norm``. Ties go to the lowest index (``numpy.argmax``).
"""

from __future__ import annotations

from typing import Any

from ..metrics import mc_accuracy, mc_predict
from .harness import FEWSHOT_SEED, fewshot_draws, protocol
from .loglik import loglikelihood
from .sources import HubSpec, MalformedRow, load_rows, need_str, task_result

CONFIGS = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}
SPLITS = ("test", "validation", "train")
FILES = {split: f"benchmarks/arc/ARC-Easy.{split}.hf_schema.jsonl" for split in SPLITS}


def file_for(task: str, split: str) -> str:
    """Mirror path of ``split`` of ``task`` (``arc_easy`` / ``arc_challenge``)."""
    return f"benchmarks/arc/{CONFIGS[task]}.{split}.hf_schema.jsonl"


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


def build_prompt(ex: dict[str, Any], shots: list[dict[str, Any]] | None = None) -> str:
    parts = [f"Question: {s['question']}\nAnswer: {s['choices'][s['gold']]}\n\n" for s in shots or ()]
    parts.append(f"Question: {ex['question']}\nAnswer:")
    return "".join(parts)


def load(data_dir=None, split: str = "test", limit: int | None = None, *, task: str = "arc_easy"):
    """``(rows, report)`` of ``split`` of ``task``; ``limit`` = the first N valid rows."""
    if task not in CONFIGS:
        raise ValueError(f"ARC task must be one of {sorted(CONFIGS)}, got {task!r}")
    if split not in SPLITS:
        raise ValueError(f"ARC split must be one of {list(SPLITS)}, got {split!r}")
    rows, report = load_rows(
        task if split == "test" else f"{task}:{split}",
        parse_row,
        data_dir=data_dir,
        rel_path=file_for(task, split),
        hub=HubSpec("allenai/ai2_arc", CONFIGS[task], split),
    )
    return (rows if limit is None else rows[:limit]), report


def evaluate_arc(
    model,
    tokenizer,
    *,
    task: str = "arc_easy",
    data_dir=None,
    limit: int | None = None,
    split: str = "test",
    num_fewshot: int = 0,
    fewshot_seed: int = FEWSHOT_SEED,
    add_bos: bool | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """ARC ``acc`` and ``acc_norm`` + the common keys; ``limit`` = first N valid rows of ``split``."""
    rows, report = load(data_dir, split, limit, task=task)
    reports = [report]
    pool: list[dict[str, Any]] = []
    if num_fewshot > 0:
        pool, train_report = load(data_dir, "train", task=task)
        reports.append(train_report)
    draws = fewshot_draws(
        pool, num_fewshot, len(rows), sampler="default", seed=fewshot_seed, docs=rows if split == "train" else None
    )
    prompts = [build_prompt(ex, shots) for ex, shots in zip(rows, draws)]
    requests, spans = [], []
    for ex, prompt in zip(rows, prompts):
        start = len(requests)
        requests.extend((prompt, " " + c) for c in ex["choices"])
        spans.append((start, len(requests)))
    results = loglikelihood(
        model,
        tokenizer,
        requests,
        batch_size=batch_size,
        max_length=max_length,
        add_bos=add_bos,
        accelerator=accelerator,
        progress=progress,
        desc=task,
    )
    lls = [[r.logprob for r in results[a:b]] for a, b in spans]
    golds = [ex["gold"] for ex in rows]
    lengths = [[float(len(c)) for c in ex["choices"]] for ex in rows]
    metrics = mc_accuracy(lls, golds, choice_lengths=lengths) if rows else {"acc": 0.0, "acc_norm": 0.0}
    samples = None
    if log_samples:
        samples = [
            {
                "id": ex["id"],
                "prompt": prompts[j],
                "choices": ex["choices"],
                "loglikelihoods": lls[j],
                "gold": golds[j],
                "pred": mc_predict(lls[j]),
                "pred_norm": mc_predict(lls[j], lengths[j]),
            }
            for j, ex in enumerate(rows)
        ]
    config = {"split": split, "num_fewshot": num_fewshot, "add_bos": add_bos}
    if num_fewshot:
        config.update(fewshot_split="train", fewshot_sampler="default", fewshot_seed=fewshot_seed)
    out = task_result(metrics, n_scored=len(rows), reports=reports, config=config, samples=samples)
    out.update(protocol(task))
    return out


def evaluate_arc_easy(model, tokenizer, **kwargs) -> dict[str, Any]:
    """ARC-Easy ``acc`` / ``acc_norm`` (lm-eval ``arc_easy``); keywords as :func:`evaluate_arc`."""
    return evaluate_arc(model, tokenizer, task="arc_easy", **kwargs)


def evaluate_arc_challenge(model, tokenizer, **kwargs) -> dict[str, Any]:
    """ARC-Challenge ``acc`` / ``acc_norm`` (lm-eval ``arc_challenge``); keywords as :func:`evaluate_arc`."""
    return evaluate_arc(model, tokenizer, task="arc_challenge", **kwargs)


__all__ = [
    "CONFIGS",
    "build_prompt",
    "evaluate_arc",
    "evaluate_arc_challenge",
    "evaluate_arc_easy",
    "file_for",
    "load",
    "parse_row",
]
