"""``evaluate_model``: run several benchmark tasks on one model and return their metrics (the native backend).

Tasks (each a function ``evaluate_<task>(model, tokenizer, *, data_dir, limit, batch_size, max_length, accelerator,
progress, log_samples, **options)`` in its own module). The benchmark tasks reproduce lm-evaluation-harness
:data:`~hf_muon.lab.evaluation.harness.LM_EVAL_VERSION` (prompts, few-shot selection, stop sequences, BOS, metrics;
see each module's docstring):

================= ===================================================== ==========================================
task              protocol (lm-eval task)                               metric keys
================= ===================================================== ==========================================
``mmlu``          5-shot (dev, same subject, first_n), " A".." D"       ``acc``, ``acc_macro``, ``acc_by_subject``
``arc_easy``      0-shot, full-text choices (``arc_easy``)              ``acc``, ``acc_norm``
``arc_challenge`` 0-shot, full-text choices (``arc_challenge``)         ``acc``, ``acc_norm``
``gsm8k``         5-shot (train, seeded sampler), greedy (``gsm8k``)    ``strict-match``, ``flexible-extract``,
                                                                        ``numeric_match`` (hf_muon extra)
``humaneval``     greedy completion, sandboxed execution (opt-in)       ``pass@1`` (``pass@k``), ``status_counts``
``blimp``         67 minimal-pair paradigms, 0-shot (``blimp`` group)   ``acc``, ``acc_by_paradigm``, ``acc_by_field``
``perplexity``    non-overlapping blocks of a mirror corpus (val tail)  ``loss``, ``perplexity``, ``tokens``, ...
``sft_loss``      assistant-only NLL, Tulu template, held-out tail      ``loss``, ``perplexity``, ``tokens``, ...
================= ===================================================== ==========================================

Every task result also has ``n_scored``, ``n_malformed``, ``data`` (per file: source, rows, malformed, reasons),
``config`` (settings used), ``elapsed_s``, ``follows`` / ``lm_eval`` / ``backend`` (what the numbers follow:
:func:`~hf_muon.lab.evaluation.harness.protocol`) and, with ``log_samples=True``, ``samples``. The lm-eval backend
(:mod:`~hf_muon.lab.evaluation.lm_eval_backend`) writes the same layout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .arc import evaluate_arc_challenge, evaluate_arc_easy
from .blimp import evaluate_blimp
from .gsm8k import evaluate_gsm8k
from .harness import protocol
from .humaneval import evaluate_humaneval
from .mmlu import evaluate_mmlu
from .perplexity import evaluate_perplexity
from .sandbox import require_code_execution
from .sft_loss import evaluate_sft_loss

TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "mmlu": evaluate_mmlu,
    "arc_easy": evaluate_arc_easy,
    "arc_challenge": evaluate_arc_challenge,
    "gsm8k": evaluate_gsm8k,
    "humaneval": evaluate_humaneval,
    "blimp": evaluate_blimp,
    "perplexity": evaluate_perplexity,
    "sft_loss": evaluate_sft_loss,
}
DEFAULT_TASKS = ("mmlu", "arc_easy", "gsm8k")
#: tasks with an lm-eval counterpart that take ``add_bos`` (None = the tokenizer's default, as lm-eval); BLiMP
#: scores each sentence after exactly one prefix token whatever the BOS setting, so it takes none
BOS_TASKS = ("mmlu", "arc_easy", "arc_challenge", "gsm8k", "humaneval")


def evaluate_model(
    model,
    tokenizer,
    tasks: Iterable[str] = DEFAULT_TASKS,
    *,
    data_dir=None,
    limit: int | Mapping[str, int | None] | None = None,
    batch_size: int = 8,
    accelerator=None,
    allow_code_execution: bool = False,
    max_length: int | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    add_bos: bool | None = None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, dict[str, Any]]:
    """``{task: result dict}`` for each task, run in the given order (see the module docstring for the keys).

    * ``data_dir``: the local data mirror (default ``$HF_MUON_DATA``); with neither, tasks load their Hub datasets.
    * ``limit``: score only the first N rows (an int for every task, or ``{task: N}``); for ``mmlu`` it is per
      subject, for ``blimp`` per paradigm, for ``perplexity`` it counts blocks.
    * ``accelerator``: an ``accelerate.Accelerator``; requests are sharded across its processes and gathered with
      ``gather_for_metrics``, and every process returns the same results.
    * ``allow_code_execution``: required (or ``HF_ALLOW_CODE_EVAL=1``) for ``humaneval``; checked before any task
      runs, so a forgotten opt-in fails fast.
    * ``max_length``: context window for truncation (default: the model config's position limit).
    * ``task_options``: per-task keyword overrides, e.g. ``{"gsm8k": {"num_fewshot": 0, "max_new_tokens": 128},
      "perplexity": {"corpus": "wikitext2"}, "humaneval": {"num_samples": 10, "ks": [1, 5]}}``.
    * ``add_bos``: BOS for the lm-eval tasks (:data:`BOS_TASKS`); ``None`` (default) follows the tokenizer, as
      lm-eval's ``add_bos_token=None``; a ``task_options`` entry wins over it.
    """
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; available: {', '.join(TASKS)}")
    task_options = dict(task_options or {})
    stray = [t for t in task_options if t not in tasks]
    if stray:
        raise ValueError(f"task_options given for task(s) not requested: {stray}")
    if isinstance(limit, Mapping):
        stray = [t for t in limit if t not in tasks]
        if stray:
            raise ValueError(f"limit given for task(s) not requested: {stray}")
    if "humaneval" in tasks:
        require_code_execution(allow_code_execution)

    results: dict[str, dict[str, Any]] = {}
    for name in tasks:
        kwargs: dict[str, Any] = dict(
            data_dir=data_dir,
            limit=limit.get(name) if isinstance(limit, Mapping) else limit,
            batch_size=batch_size,
            max_length=max_length,
            accelerator=accelerator,
            progress=progress,
            log_samples=log_samples,
        )
        if name == "humaneval":
            kwargs["allow_code_execution"] = allow_code_execution
        if name in BOS_TASKS:
            kwargs["add_bos"] = add_bos
        kwargs.update(task_options.get(name, {}))
        start = time.perf_counter()
        result = TASKS[name](model, tokenizer, **kwargs)
        result["elapsed_s"] = round(time.perf_counter() - start, 3)
        for key, value in protocol(name).items():
            result.setdefault(key, value)
        results[name] = result
    return results


__all__ = ["BOS_TASKS", "DEFAULT_TASKS", "TASKS", "evaluate_model"]
