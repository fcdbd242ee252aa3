"""What each native task follows in lm-evaluation-harness: the pinned version, task names and versions, metric
names, and the harness's few-shot samplers reproduced exactly.

The native tasks (:mod:`.mmlu`, :mod:`.arc`, :mod:`.gsm8k`, :mod:`.humaneval`, :mod:`.blimp`) were written against the task YAMLs,
filters, metrics and ``HFLM`` model code of **lm-eval** :data:`LM_EVAL_VERSION` (read from its installed sources);
every task result carries :func:`protocol` fields saying so:

* ``"follows"``: one line for tables and model cards, e.g. ``"lm-eval 0.4.13 gsm8k v3.0 (strict-match,
  flexible-extract)"``;
* ``"lm_eval"``: ``{"version", "task", "task_version", "metrics", "extra_metrics"}`` (``metrics``: the keys that are
  lm-eval's own numbers; ``extra_metrics``: hf_muon additions, not comparable to published lm-eval scores);
* ``"backend"``: ``"native"`` or ``"lm-eval"`` (which code produced the numbers).

Few-shot samplers (``lm_eval.api.samplers``; the evaluator seeds each task's sampler once with
``fewshot_random_seed=1234`` and then builds the requests document by document in order):

* ``"default"`` (``ContextSampler``): one ``random.Random(1234)`` stream per task; document ``i`` gets
  ``rnd.sample(pool, k)``, the ``i``-th draw of that stream. So document ``i``'s exemplars depend on ``i`` (and
  ``--limit N`` keeps the exemplars of the first N documents). When the pool *is* the scored split, lm-eval draws
  ``k + 1`` and drops the document itself (``exclude``).
* ``"first_n"`` (``FirstNSampler``): the first ``k`` rows of the pool, for every document (MMLU).

Known, deliberate differences from running lm-eval itself (none changes a score on the mirror's clean rows):

* a row the task's parser rejects is counted and skipped (lm-eval would score or crash on it); the lm-eval backend
  is fed the same validated rows, so both backends always see the same documents;
* a ``NaN`` log-likelihood is never the argmax (``numpy.argmax``, which lm-eval uses, would pick it);
* generation stops row by row (lm-eval runs a batch until every row has hit a stop string); both cut the text
  at the first stop string, so the returned strings are the same up to float round-off of padded batches;
* with several processes, lm-eval's ``default`` sampler runs one stream per rank over that rank's documents, so
  its exemplars then depend on the world size; the native tasks always give the single-process exemplars.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

#: the lm-evaluation-harness release whose task definitions the native tasks reproduce (and the pinned extra)
LM_EVAL_VERSION = "0.4.13"
FEWSHOT_SEED = 1234  # lm_eval.defaults.DEFAULT_OTHER_SEED, simple_evaluate(fewshot_random_seed=...)

#: native task -> (lm-eval task, its YAML ``metadata.version``, lm-eval metric keys, hf_muon-only metric keys)
TASKS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "mmlu": ("mmlu", "1.0", ("acc",), ("acc_macro", "acc_by_subject")),
    "arc_easy": ("arc_easy", "1.0", ("acc", "acc_norm"), ()),
    "arc_challenge": ("arc_challenge", "1.0", ("acc", "acc_norm"), ()),
    "gsm8k": ("gsm8k", "3.0", ("strict-match", "flexible-extract"), ("numeric_match",)),
    "humaneval": ("humaneval", "1.0", ("pass@1",), ()),
    "blimp": ("blimp", "2.0", ("acc",), ("acc_by_paradigm", "acc_by_field")),
}


def follows_line(task: str, version: str = LM_EVAL_VERSION) -> str:
    """``"lm-eval <version> <task> v<task version> (<metrics>)"`` for a native task name."""
    name, task_version, metrics, _ = TASKS[task]
    return f"lm-eval {version} {name} v{task_version} ({', '.join(metrics)})"


def protocol(
    task: str,
    *,
    backend: str = "native",
    version: str = LM_EVAL_VERSION,
    extra_metrics: Sequence[str] | None = None,
    task_version: str | None = None,
) -> dict[str, Any]:
    """The ``follows`` / ``lm_eval`` / ``backend`` fields of a task result (see the module docstring)."""
    if task not in TASKS:
        return {"follows": "hf_muon (no lm-eval counterpart)", "lm_eval": None, "backend": backend}
    name, pinned_task_version, metrics, extras = TASKS[task]
    task_version = pinned_task_version if task_version is None else str(task_version)
    return {
        "follows": f"lm-eval {version} {name} v{task_version} ({', '.join(metrics)})",
        "lm_eval": {
            "version": version,
            "task": name,
            "task_version": task_version,
            "metrics": list(metrics),
            "extra_metrics": list(extras if extra_metrics is None else extra_metrics),
        },
        "backend": backend,
    }


def fewshot_draws(
    pool: Sequence[Any],
    k: int,
    n_docs: int,
    *,
    sampler: str = "default",
    seed: int = FEWSHOT_SEED,
    docs: Sequence[Any] | None = None,
) -> list[list[Any]]:
    """The exemplars lm-eval gives documents ``0..n_docs-1`` (see the module docstring).

    ``docs``: the scored documents, only when the pool is the scored split itself (each document is then excluded
    from its own exemplars, as lm-eval does when ``fewshot_split == test_split``).
    """
    if k < 0:
        raise ValueError(f"num_fewshot must be >= 0, got {k}")
    if k == 0:
        return [[] for _ in range(n_docs)]
    pool = list(pool)
    if sampler == "first_n":
        out = []
        for i in range(n_docs):
            avail = [x for x in pool if docs is None or x != docs[i]]
            if k > len(avail):
                raise ValueError(f"{k} few-shot exemplars requested but the pool has {len(avail)}")
            out.append(avail[:k])
        return out
    if sampler != "default":
        raise ValueError(f"unknown few-shot sampler {sampler!r} (lm-eval has 'default' and 'first_n')")
    if k > len(pool) - (docs is not None):
        raise ValueError(f"{k} few-shot exemplars requested but the pool has {len(pool)}")
    rnd = random.Random(seed)
    out = []
    for i in range(n_docs):
        if docs is None:
            out.append(rnd.sample(pool, k))
            continue
        shots = [x for x in rnd.sample(pool, k + 1) if x != docs[i]][:k]
        if len(shots) < k:  # duplicates of the document were drawn: lm-eval resamples from the pool without it
            shots = rnd.sample([x for x in pool if x != docs[i]], k)
        out.append(shots)
    return out


__all__ = ["FEWSHOT_SEED", "LM_EVAL_VERSION", "TASKS", "fewshot_draws", "follows_line", "protocol"]
