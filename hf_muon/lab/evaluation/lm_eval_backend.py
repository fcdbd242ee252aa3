"""The lm-eval backend: the benchmark tasks run by lm-evaluation-harness itself, on the local data mirror, written in
the native result layout (:func:`~hf_muon.lab.evaluation.runner.evaluate_model`).

Install the optional extra (``pip install "lm-eval==0.4.13"``, the version the native tasks follow:
:data:`~hf_muon.lab.evaluation.harness.LM_EVAL_VERSION`). Nothing here is imported by the native backend.

How the official templates are pointed at the mirror
----------------------------------------------------
:func:`write_task_configs` reads each task's rows with the native loaders (same validation, same malformed-row
report, same ``limit``: the first N rows, per subject for MMLU), writes them as JSON Lines into a work folder, and
writes one local task YAML per lm-eval task that ``include``-s the **installed official task file** and overrides
only where the data lives::

    include: <site-packages>/lm_eval/tasks/gsm8k/gsm8k.yaml
    dataset_path: json
    dataset_name: null
    dataset_kwargs: {data_files: {test: <work>/gsm8k/test.jsonl, train: <work>/gsm8k/train.jsonl}}

(MMLU: one such file per ``mmlu_<subject>.yaml``, with that subject's ``test`` and ``dev`` rows; ARC: splits the
mirror lacks are set to ``null``.) Everything else (prompt, few-shot split and sampler, stop sequences, filters,
metrics) is the official YAML's. Overrides are written only for options given: ``num_fewshot`` (MMLU defaults to
5, the published protocol, as the native task) and ``max_new_tokens`` (-> ``generation_kwargs.max_gen_toks``).
A ``TaskManager(include_path=<work>, include_defaults=False)`` indexes only these files, so task names stay the
official ones (``gsm8k``, ``arc_easy``, ``mmlu_<subject>``).

HumanEval is the one exception: the official ``humaneval/utils.py`` loads ``evaluate``'s ``code_eval`` from the Hub
when it is imported, which fails offline, so its YAML cannot be ``include``-d. Its local YAML is the official one's
keys (read with ``!function`` unresolved) with the two functions re-pointed at :func:`build_predictions` (the
official code) and :func:`code_eval_pass_at_k` (``code_eval``'s program layout ``candidate + "\\n" + test``, timeout
3 s, unbiased pass@k, executed in hf_muon's sandbox instead of ``exec``). Running it needs the same opt-in as the
native task.

Model: ``lm_eval.models.huggingface.HFLM`` on the model folder (or a loaded model + tokenizer), ``batch_size`` as
given, ``add_bos_token=add_bos`` (``None``: the tokenizer's default, lm-eval's own default), seeds as
``simple_evaluate``'s defaults (``fewshot_random_seed=1234``). HFLM applies ``add_bos_token`` only to a tokenizer
it loads itself, so with ``add_bos`` set a loaded tokenizer is saved to the work folder and HFLM loads that copy
(the same BOS as the folder path and native scoring; the object itself is not changed).

BLiMP: one local ``blimp_<paradigm>.yaml`` per paradigm (each ``include``-s the official one) and a local
``blimp`` group listing them with the official group's ``aggregate_metric_list``, so the group score is lm-eval's
own aggregate.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .harness import LM_EVAL_VERSION, protocol
from .lm_eval_convert import EXEC_LOG as _EXEC_LOG
from .lm_eval_convert import convert as _convert
from .lm_eval_tasks import write_task_configs
from .sandbox import require_code_execution, run_programs

logger = logging.getLogger("hf_muon.lab.evaluation")

#: native task names the lm-eval backend can run
LM_EVAL_TASKS = ("mmlu", "arc_easy", "arc_challenge", "gsm8k", "humaneval", "blimp")
#: task options the backend understands (anything else is an error, never silently ignored)
OPTIONS = {
    "mmlu": {"num_fewshot"},
    "arc_easy": {"num_fewshot", "split"},
    "arc_challenge": {"num_fewshot", "split"},
    "gsm8k": {"num_fewshot", "max_new_tokens"},
    "humaneval": {"max_new_tokens", "timeout", "memory_mb", "workers"},
    "blimp": {"paradigms"},
}


class LmEvalNotInstalled(ImportError):
    pass


def lm_eval_version() -> str | None:
    """The installed lm-eval version, or ``None``."""
    try:
        return importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_lm_eval() -> str:
    version = lm_eval_version()
    if version is None:
        raise LmEvalNotInstalled(
            f"the lm-eval backend needs lm-evaluation-harness: pip install 'lm-eval=={LM_EVAL_VERSION}' "
            "(or use --backend native, the default)"
        )
    if version != LM_EVAL_VERSION:
        logger.warning("lm-eval %s is installed; the native tasks follow lm-eval %s", version, LM_EVAL_VERSION)
    return version


def official_task_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


# ----------------------------------------------------------------------------------------------- HumanEval stand-ins


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval ``humaneval/utils.build_predictions``: the prompt followed by each completion."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]


def code_eval_pass_at_k(
    references: list[str],
    predictions: list[list[str]],
    k=None,
    *,
    timeout: float = 3.0,
    memory_mb: int = 1024,
    workers: int = 2,
) -> dict[str, float]:
    """``evaluate``'s ``code_eval`` (as lm-eval calls it): each candidate program ``candidate + "\\n" + test`` run
    once, pass@k by the unbiased estimator; executed by :func:`~hf_muon.lab.evaluation.sandbox.run_programs`."""
    from ..metrics import pass_at_k

    ks = [k] if isinstance(k, int) else list(k or [1])
    programs, owners = [], []
    for j, (cands, test) in enumerate(zip(predictions, references)):
        for c in cands:
            programs.append(c + "\n" + test)
            owners.append(j)
    results = run_programs(
        programs,
        workers=workers,
        timeout=timeout,
        memory_mb=memory_mb,
        allow_code_execution=True,
        progress=False,
    )
    _EXEC_LOG.extend(r.status for r in results)
    n = [len(c) for c in predictions]
    c = [0] * len(predictions)
    for j, r in zip(owners, results):
        c[j] += r.status == "passed"
    return pass_at_k(n, c, ks)


def _tokenizer_for_hflm(tokenizer, add_bos: bool | None, work: Path):
    """What HFLM is given for a loaded tokenizer. HFLM applies ``add_bos_token`` only to a tokenizer it loads
    itself (``AutoTokenizer.from_pretrained(..., add_bos_token=...)``); an object is used as it is, so GPT-2's
    would add no BOS under ``add_bos=True`` while native scoring and the folder path do. With ``add_bos`` set,
    the object is saved and HFLM loads that copy by path, exactly as for a model folder."""
    if add_bos is None:
        return tokenizer
    path = work / "_tokenizer"
    tokenizer.save_pretrained(str(path))
    return str(path)


def evaluate_with_lm_eval(
    model,
    tasks: Iterable[str] = ("mmlu", "arc_easy", "gsm8k"),
    *,
    tokenizer=None,
    data_dir=None,
    limit: int | Mapping[str, int | None] | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    device: str | None = None,
    add_bos: bool | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    allow_code_execution: bool = False,
    log_samples: bool = False,
    work_dir: str | os.PathLike | None = None,
) -> dict[str, dict[str, Any]]:
    """``{task: result}`` in the native layout, computed by lm-evaluation-harness (see the module docstring).

    ``model``: a model folder (``save_pretrained`` output with its tokenizer), or a loaded causal LM with
    ``tokenizer``. ``work_dir``: where the data copies and task YAMLs go (default: a temporary folder, removed
    afterwards); keep it to inspect or re-run exactly what lm-eval saw.
    """
    version = require_lm_eval()
    tasks = list(tasks)
    bad = [t for t in tasks if t not in LM_EVAL_TASKS]
    if bad:
        raise ValueError(
            f"task(s) {bad} have no lm-eval counterpart; lm-eval backend tasks: {', '.join(LM_EVAL_TASKS)}"
        )
    task_options = dict(task_options or {})
    if "humaneval" in tasks:
        require_code_execution(allow_code_execution)
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hf_muon_lm_eval_")
        work = Path(tmp.name)
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        prepared = {}
        for t in tasks:
            lim = limit.get(t) if isinstance(limit, Mapping) else limit
            prepared[t] = write_task_configs(t, work, data_dir=data_dir, limit=lim, options=task_options.get(t))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"batch_size": batch_size, "device": device}
        if add_bos is not None:
            kwargs["add_bos_token"] = add_bos
        if max_length is not None:
            kwargs["max_length"] = max_length
        if isinstance(model, (str, os.PathLike)):
            lm = HFLM(pretrained=str(model), **kwargs)
        else:
            if tokenizer is None:
                raise ValueError("a loaded model needs its tokenizer (tokenizer=...)")
            lm = HFLM(pretrained=model, tokenizer=_tokenizer_for_hflm(tokenizer, add_bos, work), **kwargs)
        manager = TaskManager(include_path=str(work), include_defaults=False)
        results: dict[str, dict[str, Any]] = {}
        for t in tasks:  # one simple_evaluate per task: its timing, and its own few-shot sampler stream
            names, reports, config = prepared[t]
            _EXEC_LOG.clear()
            start = time.perf_counter()
            out = simple_evaluate(
                model=lm,
                tasks=names,
                task_manager=manager,
                log_samples=True,
                bootstrap_iters=0,
                confirm_run_unsafe_code=allow_code_execution,
            )
            conv = _convert(t, names, out, log_samples, config)
            from .sources import task_result

            config = {k: v for k, v in config.items() if k not in ("fields", "sizes")}
            config = dict(
                config, add_bos=add_bos, lm_eval_tasks=names, task_yaml_dir=str(work) if tmp is None else None
            )
            res = task_result(
                conv["metrics"], n_scored=conv["n"], reports=reports, config=config, samples=conv["samples"]
            )
            versions = {str(out["versions"].get(n)) for n in names}
            res.update(
                protocol(
                    t,
                    backend="lm-eval",
                    version=version,
                    task_version=versions.pop() if len(versions) == 1 else None,
                )
            )
            res["elapsed_s"] = round(time.perf_counter() - start, 3)
            results[t] = res
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


__all__ = [
    "LM_EVAL_TASKS",
    "LmEvalNotInstalled",
    "build_predictions",
    "code_eval_pass_at_k",
    "evaluate_with_lm_eval",
    "lm_eval_version",
    "official_task_dir",
    "require_lm_eval",
    "write_task_configs",
]
