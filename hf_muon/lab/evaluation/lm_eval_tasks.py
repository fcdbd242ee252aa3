"""Local lm-eval task files: mirror rows as JSONL and task YAMLs that ``include`` the installed official task
file with ``dataset_path: json`` + ``data_files`` (the data half of :mod:`.lm_eval_backend`)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import arc, blimp, gsm8k, humaneval, mmlu

logger = logging.getLogger("hf_muon.lab.evaluation")

#: native task names the lm-eval backend can run


# ----------------------------------------------------------------------------------------------- data + YAMLs
def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


def _raw(parse):
    """A load_rows parser that validates with ``parse`` but keeps the row as it is in the file (Hub schema)."""

    def keep(row):
        parse(row)
        return row

    return keep


def _yaml(path: Path, cfg: dict[str, Any], functions: Mapping[str, str] | None = None) -> None:
    import yaml

    text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=1000)
    for placeholder, qual in (functions or {}).items():
        text = text.replace(f"'{placeholder}'", f"!function {qual}").replace(placeholder, f"!function {qual}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _local(include: Path, data_files: Mapping[str, str], **overrides) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "include": str(include),
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": dict(data_files)},
    }
    cfg.update(overrides)  # explicit None values are written (e.g. ``training_split: null``)
    return cfg


def _gen_kwargs(official_yaml: Path, max_new_tokens: int | None) -> dict[str, Any] | None:
    if max_new_tokens is None:
        return None
    from lm_eval.tasks._yaml_loader import load_yaml

    kwargs = dict(load_yaml(official_yaml, resolve_func=False).get("generation_kwargs") or {})
    kwargs["max_gen_toks"] = int(max_new_tokens)
    return kwargs


def _mmlu_configs(task, official: Path, out: Path, data_dir, limit, options):
    k = int(options.get("num_fewshot", 5))
    test, pool, reports = mmlu.load(data_dir, limit)
    by_subject: dict[str, list] = defaultdict(list)
    for ex in test:
        by_subject[ex["subject"]].append(ex)
    names = []
    for subject, rows in by_subject.items():
        src = official / "mmlu" / "default" / f"mmlu_{subject}.yaml"
        if not src.is_file():
            raise FileNotFoundError(f"mmlu subject {subject!r}: no official task file {src}")
        files = {
            "test": _write_jsonl(out / subject / "test.jsonl", rows),
            "dev": _write_jsonl(out / subject / "dev.jsonl", pool.get(subject, [])),
        }
        _yaml(out / f"mmlu_{subject}.yaml", _local(src, files, num_fewshot=k))
        names.append(f"mmlu_{subject}")
    config = {"num_fewshot": k, "fewshot_split": "dev", "fewshot_sampler": "first_n"}
    return names, reports, {**config, "limit_per_subject": limit, "subjects": len(names)}


def _arc_configs(task, official: Path, out: Path, data_dir, limit, options):
    k = int(options.get("num_fewshot", 0))
    split = options.get("split", "test")
    raw, report = _load_raw_arc(task, split, data_dir, limit)
    files = {"test": _write_jsonl(out / "test.jsonl", raw)}
    reports = [report]
    overrides: dict[str, Any] = {"test_split": "test", "validation_split": None, "training_split": None}
    overrides["num_fewshot"] = k
    if k > 0:
        train, train_report = _load_raw_arc(task, "train", data_dir, None)
        files["train"] = _write_jsonl(out / "train.jsonl", train)
        overrides["training_split"] = "train"
        reports.append(train_report)
    _yaml(out / f"{task}.yaml", _local(official / "arc" / f"{task}.yaml", files, **overrides))
    config = {"split": split, "num_fewshot": k}
    if k:
        config.update(fewshot_split="train", fewshot_sampler="default", fewshot_seed=1234)
    return [task], reports, config


def _gsm8k_configs(task, official: Path, out: Path, data_dir, limit, options):
    from .sources import load_rows

    k = int(options.get("num_fewshot", gsm8k.NUM_FEWSHOT))
    parse = _raw(gsm8k.parse_row)
    test, report = load_rows("gsm8k", parse, data_dir=data_dir, rel_path=gsm8k.TEST_FILE, hub=gsm8k.HUB)
    train, train_report = load_rows(
        "gsm8k:train", parse, data_dir=data_dir, rel_path=gsm8k.TRAIN_FILE, hub=gsm8k.HUB_TRAIN
    )
    test = test if limit is None else test[:limit]
    files = {"train": _write_jsonl(out / "train.jsonl", train), "test": _write_jsonl(out / "test.jsonl", test)}
    src = official / "gsm8k" / "gsm8k.yaml"
    gen = _gen_kwargs(src, options.get("max_new_tokens"))
    _yaml(out / "gsm8k.yaml", _local(src, files, num_fewshot=k, **({"generation_kwargs": gen} if gen else {})))
    config = {"num_fewshot": k, "fewshot_split": "train", "fewshot_sampler": "default", "fewshot_seed": 1234}
    max_new = int(options.get("max_new_tokens", gsm8k.MAX_NEW_TOKENS))
    return (
        ["gsm8k"],
        [report, train_report],
        {**config, "max_new_tokens": max_new, "stop": list(gsm8k.STOP), "do_sample": False},
    )


def _humaneval_utils(path: Path, timeout: float, memory_mb: int, workers: int) -> None:
    """The task's metric module: code_eval semantics, run in hf_muon's sandbox with these limits."""
    path.write_text(
        "# generated by hf_muon.lab.evaluation.lm_eval_backend: code_eval semantics in hf_muon's sandbox\n"
        "from hf_muon.lab.evaluation.lm_eval_backend import build_predictions, code_eval_pass_at_k\n\n\n"
        "def pass_at_k(references, predictions, k=None):\n"
        f"    return code_eval_pass_at_k(references, predictions, k=k, timeout={timeout!r}, "
        f"memory_mb={memory_mb!r}, workers={workers!r})\n",
        encoding="utf-8",
    )


def _humaneval_configs(task, official: Path, out: Path, data_dir, limit, options):
    from lm_eval.tasks._yaml_loader import load_yaml

    from .sources import load_rows

    parse = _raw(humaneval.parse_row)
    rows, report = load_rows("humaneval", parse, data_dir=data_dir, rel_path=humaneval.FILE, hub=humaneval.HUB)
    rows = rows if limit is None else rows[:limit]
    src = official / "humaneval" / "humaneval.yaml"
    cfg = load_yaml(src, resolve_func=False)
    cfg.pop("tag", None)
    data_files = {"test": _write_jsonl(out / "test.jsonl", rows)}
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files})
    cfg["metric_list"] = [dict(m, metric="__PASS_AT_K__") for m in cfg["metric_list"]]
    cfg["filter_list"] = [
        {"name": f["name"], "filter": [dict(x, filter_fn="__BUILD_PREDICTIONS__") for x in f["filter"]]}
        for f in cfg["filter_list"]
    ]
    gen = _gen_kwargs(src, options.get("max_new_tokens"))
    if gen is not None:
        cfg["generation_kwargs"] = gen
    timeout = float(options.get("timeout", humaneval.TIMEOUT))
    memory_mb = int(options.get("memory_mb", 1024))
    _humaneval_utils(out / "humaneval_utils.py", timeout, memory_mb, int(options.get("workers", 2)))
    functions = {
        "__PASS_AT_K__": "humaneval_utils.pass_at_k",
        "__BUILD_PREDICTIONS__": "humaneval_utils.build_predictions",
    }
    _yaml(out / "humaneval.yaml", cfg, functions)
    max_new = int(cfg.get("generation_kwargs", {}).get("max_gen_toks", humaneval.MAX_NEW_TOKENS))
    config = {"num_samples": 1, "ks": [1], "do_sample": False, "max_new_tokens": max_new, "timeout": timeout}
    return ["humaneval"], [report], {**config, "memory_mb": memory_mb, "stop": list(humaneval.STOP)}


def _blimp_task(task, official: Path, out: Path, data_dir, limit, options):
    return _blimp_configs(official, out, data_dir, limit, options.get("paradigms"))


_WRITERS = {
    "mmlu": _mmlu_configs,
    "arc_easy": _arc_configs,
    "arc_challenge": _arc_configs,
    "gsm8k": _gsm8k_configs,
    "blimp": _blimp_task,
    "humaneval": _humaneval_configs,
}


def write_task_configs(
    task: str,
    work: Path,
    *,
    data_dir=None,
    limit: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[list[str], list, dict[str, Any]]:
    """Write the rows and local YAMLs of one native ``task`` under ``work``.

    Returns ``(lm-eval task names, LoadReports, config)``."""
    from .lm_eval_backend import LM_EVAL_TASKS, OPTIONS, official_task_dir

    options = dict(options or {})
    unknown = set(options) - OPTIONS[task]
    if unknown:
        raise ValueError(
            f"{task}: option(s) {sorted(unknown)} not supported by the lm-eval backend "
            f"(supported: {sorted(OPTIONS[task])})"
        )
    if task not in _WRITERS:
        raise ValueError(f"{task!r} has no lm-eval counterpart; lm-eval backend tasks: {', '.join(LM_EVAL_TASKS)}")
    return _WRITERS[task](task, official_task_dir(), work / task, data_dir, limit, options)


def _blimp_configs(official: Path, out: Path, data_dir, limit, paradigms):
    """One ``blimp_<p>.yaml`` per paradigm (``include``-ing the official one, its ``train`` split from the mirror
    rows) and a local ``blimp`` group over them with the official group's ``aggregate_metric_list`` and version, so
    lm-eval itself computes the group score."""
    from lm_eval.tasks._yaml_loader import load_yaml

    raw, reports = blimp.load(data_dir, limit, paradigms, parse=_raw(blimp.parse_row))
    names = []
    for p, rows in raw.items():
        src = official / "blimp" / f"{p}.yaml"
        if not src.is_file():
            raise FileNotFoundError(f"blimp paradigm {p!r}: no official task file {src}")
        _yaml(out / f"blimp_{p}.yaml", _local(src, {"train": _write_jsonl(out / p / "train.jsonl", rows)}))
        names.append(f"blimp_{p}")
    group = load_yaml(official / "blimp" / "_blimp.yaml", resolve_func=False)
    _yaml(
        out / "_blimp.yaml",
        {
            "group": group["group"],
            "task": names,
            "aggregate_metric_list": group["aggregate_metric_list"],
            "metadata": group.get("metadata", {}),
        },
    )
    fields = {p: blimp.paradigm_field([blimp.parse_row(r) for r in rows]) for p, rows in raw.items()}
    return (
        [group["group"]],
        reports,
        {
            "num_fewshot": 0,
            "limit_per_paradigm": limit,
            "paradigms": len(names),
            "prefix_token": "bos, else eos (empty context)",
            "fields": fields,
            "sizes": {p: len(rows) for p, rows in raw.items()},
        },
    )


def _load_raw_arc(task: str, split: str, data_dir, limit):
    from .sources import HubSpec, load_rows

    rows, report = load_rows(
        task if split == "test" else f"{task}:{split}",
        _raw(arc.parse_row),
        data_dir=data_dir,
        rel_path=arc.file_for(task, split),
        hub=HubSpec("allenai/ai2_arc", arc.CONFIGS[task], split),
    )
    return (rows if limit is None else rows[:limit]), report
