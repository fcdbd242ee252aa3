"""``hf-muon score MODEL_DIR``: score a saved model on the benchmark tasks, natively (default, fast) or through
lm-evaluation-harness (``--backend lm-eval``), and write one result JSON in the native layout.

    hf-muon score out/model --tasks mmlu,arc_easy,gsm8k --data-dir ../shared/data --output scores.json
    hf-muon score out/model --backend lm-eval --limit 50 --set gsm8k.num_fewshot=0 --output scores-lm-eval.json
    hf-muon score out/model --tasks blimp --limit 100 --output blimp.json     # 67 paradigms x first 100 pairs

With ``--backend lm-eval`` the tasks that lm-eval has (``mmlu``, ``arc_easy``, ``arc_challenge``, ``gsm8k``,
``humaneval``, ``blimp``) are run by lm-eval (:mod:`~hf_muon.lab.evaluation.lm_eval_backend`); ``perplexity`` and ``sft_loss``,
which it has not, still run natively. Each task result says which in ``backend`` and what it follows in ``follows``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .runner import BOS_TASKS, DEFAULT_TASKS, TASKS

BACKENDS = ("native", "lm-eval")


def _load_native(model_dir, device: str | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto")  # the saved dtype, as HFLM's default
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), AutoTokenizer.from_pretrained(str(model_dir))


def score(
    model_dir: str | os.PathLike,
    tasks: Iterable[str] = DEFAULT_TASKS,
    *,
    backend: str = "native",
    data_dir=None,
    limit: int | Mapping[str, int | None] | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    add_bos: bool | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    allow_code_execution: bool = False,
    log_samples: bool = False,
    device: str | None = None,
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """``{task: result}`` for a saved model folder, in task order, with either backend (see the module docstring)."""
    from .runner import evaluate_model

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; available: {', '.join(TASKS)}")
    task_options = {t: dict(v) for t, v in (task_options or {}).items()}
    limits = {t: (limit.get(t) if isinstance(limit, Mapping) else limit) for t in tasks}
    via_lm_eval: list[str] = []
    if backend == "lm-eval":
        from .lm_eval_backend import LM_EVAL_TASKS

        via_lm_eval = [t for t in tasks if t in LM_EVAL_TASKS]
    native = [t for t in tasks if t not in via_lm_eval]
    results: dict[str, dict[str, Any]] = {}
    if via_lm_eval:
        from .lm_eval_backend import evaluate_with_lm_eval

        results.update(
            evaluate_with_lm_eval(
                str(model_dir),
                via_lm_eval,
                data_dir=data_dir,
                limit={t: limits[t] for t in via_lm_eval},
                batch_size=batch_size,
                max_length=max_length,
                device=device,
                add_bos=add_bos,
                task_options={t: task_options[t] for t in via_lm_eval if t in task_options},
                allow_code_execution=allow_code_execution,
                log_samples=log_samples,
                work_dir=work_dir,
            )
        )
    if native:
        model, tok = _load_native(model_dir, device)
        results.update(
            evaluate_model(
                model,
                tok,
                native,
                data_dir=data_dir,
                limit={t: limits[t] for t in native},
                batch_size=batch_size,
                max_length=max_length,
                add_bos=add_bos,
                allow_code_execution=allow_code_execution,
                task_options={t: task_options[t] for t in native if t in task_options},
                progress=progress,
                log_samples=log_samples,
            )
        )
    return {t: results[t] for t in tasks}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_limit(text: str | None):
    if text is None:
        return None
    if "=" not in text:
        return int(text)
    out = {}
    for item in text.split(","):
        task, _, n = item.partition("=")
        out[task.strip()] = int(n)
    return out


def _parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        task, dot, name = key.partition(".")
        if not eq or not dot or not task or not name:
            raise SystemExit(f"--set expects TASK.OPTION=VALUE, got {item!r}")
        out.setdefault(task, {})[name] = _value(value)
    return out


def _summary(results: Mapping[str, Mapping[str, Any]]) -> str:
    lines = []
    for task, res in results.items():
        shown = {
            k: v
            for k, v in res.items()
            if isinstance(v, (int, float))
            and not isinstance(v, bool)
            and k not in ("n_scored", "n_malformed", "elapsed_s")
        }
        values = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        lines.append(f"{task:14s} [{res.get('backend')}] n={res.get('n_scored')}  {values}   ({res.get('follows')})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hf-muon score",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", help="a save_pretrained folder (model + tokenizer)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="native",
        help="native (default, fast) or lm-eval (lm-evaluation-harness itself; needs the lm-eval extra)",
    )
    p.add_argument(
        "--tasks",
        default=",".join(DEFAULT_TASKS),
        help=f"comma-separated, from: {', '.join(TASKS)} (default: %(default)s)",
    )
    p.add_argument(
        "--limit",
        default=None,
        help="first N rows of every task (MMLU: per subject; BLiMP: per paradigm), or TASK=N,...",
    )
    p.add_argument("--data-dir", default=None, help="the local data mirror (default: $HF_MUON_DATA, else the Hub)")
    p.add_argument("--output", default=None, help="write the result JSON here (default: print only the summary)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=None, help="context window (default: the model config's)")
    p.add_argument(
        "--add-bos",
        choices=("auto", "true", "false"),
        default="auto",
        help=f"BOS for {', '.join(BOS_TASKS)}: auto = the tokenizer's default, as lm-eval (default)",
    )
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="TASK.OPTION=VALUE",
        help="a task option, e.g. gsm8k.num_fewshot=0, humaneval.max_new_tokens=256 or "
        "blimp.paradigms=passive_1,wh_island (repeatable)",
    )
    p.add_argument(
        "--allow-code-execution",
        action="store_true",
        help="required for humaneval: runs generated code in a resource-limited subprocess",
    )
    p.add_argument("--log-samples", action="store_true", help="include per-item samples in the JSON")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--work-dir", default=None, help="lm-eval backend: keep its data copies and task YAMLs here")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    add_bos = {"auto": None, "true": True, "false": False}[args.add_bos]
    try:
        results = score(
            args.model_dir,
            tasks,
            backend=args.backend,
            data_dir=args.data_dir,
            limit=_parse_limit(args.limit),
            batch_size=args.batch_size,
            max_length=args.max_length,
            add_bos=add_bos,
            task_options=_parse_options(args.options),
            allow_code_execution=args.allow_code_execution,
            log_samples=args.log_samples,
            device=args.device,
            work_dir=args.work_dir,
        )
    except ImportError as e:
        print(f"hf-muon score: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(_summary(results))
    if args.output:
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()


__all__ = ["BACKENDS", "build_parser", "main", "score"]
