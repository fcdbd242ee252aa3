"""HumanEval (Chen et al. 2021): code completion, execution against the unit tests (opt-in), unbiased pass@k, as
lm-evaluation-harness 0.4.13 ``humaneval`` (``tasks/humaneval/humaneval.yaml``, v1.0).

Data: ``openai/openai_humaneval`` (``test``, 164 problems), schema ``{task_id, prompt, entry_point,
canonical_solution, test}``; mirrored as ``benchmarks/humaneval/HumanEval.jsonl.gz``.

Protocol (lm-eval YAML keys in parentheses):

* the model continues the ``prompt`` (``doc_to_text: "{{prompt}}"``, 0-shot) with no other context; BOS per the
  tokenizer default (``add_bos`` overrides). Generation (``generation_kwargs``) is greedy (``do_sample: false``), at
  most ``max_new_tokens`` = 1024 (``max_gen_toks``), stopping at EOS or any of :data:`STOP` = ``until: ["\\nclass",
  "\\ndef", "\\n#", "\\nif", "\\nprint"]``, cut before the stop string;
* program (``build_predictions`` filter + ``doc_to_target: "{{test}}\\ncheck({{entry_point}})"`` + ``code_eval``) =
  ``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``, run by
  :mod:`~hf_muon.lab.evaluation.sandbox` (subprocess, ``python -I``, wall-clock ``timeout`` = 3 s as ``code_eval``'s
  default, ``RLIMIT_AS``/``RLIMIT_CPU``, empty temp cwd, minimal environment). A sample passes iff the program
  exits 0; ``pass@1`` (``metric_list: pass_at_k, k: [1]``) is the lm-eval number;
* hf_muon extra: ``num_samples > 1`` samples with ``temperature`` (default 0.8) and nucleus ``top_p`` (0.95), and
  ``pass@k`` is reported for every ``k`` in ``ks`` with ``k <= num_samples``
  (:func:`hf_muon.lab.metrics.pass_at_k`, the unbiased estimator). That is not lm-eval's ``humaneval`` (its
  ``humaneval_64`` samples 64 at temperature 0.2).

**Execution needs an explicit opt-in** (``allow_code_execution=True`` or ``HF_ALLOW_CODE_EVAL=1``); without it
:func:`evaluate_humaneval` raises :class:`~hf_muon.lab.evaluation.sandbox.CodeExecutionNotAllowed` *before* generating.
With an accelerator, programs run on the main process only and the outcomes are broadcast.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..metrics import pass_at_k
from .generation import generate_until
from .harness import protocol
from .sandbox import require_code_execution, run_programs
from .sources import HubSpec, load_rows, need_str, task_result

FILE = "benchmarks/humaneval/HumanEval.jsonl.gz"
HUB = HubSpec("openai/openai_humaneval", None, "test")
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
MAX_NEW_TOKENS = 1024
TIMEOUT = 3.0


def parse_row(row: Any) -> dict[str, Any]:
    """Validate one row: string ``task_id``, ``prompt``, ``entry_point`` (an identifier) and ``test``."""
    ex = {k: need_str(row, k) for k in ("task_id", "prompt", "entry_point", "test")}
    if not ex["entry_point"].isidentifier():
        raise ValueError(f"'entry_point' {ex['entry_point']!r} is not a Python identifier")
    solution = row.get("canonical_solution")
    ex["canonical_solution"] = solution if isinstance(solution, str) else None
    return ex


def build_program(ex: dict[str, Any], completion: str) -> str:
    """The program the sandbox runs for one completion: ``code_eval``'s ``candidate + "\\n" + test_case`` with
    lm-eval's candidate (prompt + completion) and test case (``test + "\\ncheck(entry_point)"``)."""
    return ex["prompt"] + completion + "\n" + ex["test"] + "\n" + f"check({ex['entry_point']})"


def load(data_dir=None, limit: int | None = None):
    rows, report = load_rows("humaneval", parse_row, data_dir=data_dir, rel_path=FILE, hub=HUB)
    return (rows if limit is None else rows[:limit]), report


def evaluate_humaneval(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    num_samples: int = 1,
    ks: Sequence[int] = (1,),
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = MAX_NEW_TOKENS,
    timeout: float = TIMEOUT,
    memory_mb: int = 1024,
    workers: int = 2,
    seed: int = 0,
    add_bos: bool | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
    allow_code_execution: bool = False,
) -> dict[str, Any]:
    """``pass@k`` for each allowed ``k``, ``status_counts`` of all executions, + the common keys."""
    require_code_execution(allow_code_execution)
    too_big = [k for k in ks if not 1 <= int(k) <= num_samples]
    if too_big:
        raise ValueError(f"pass@k needs 1 <= k <= num_samples={num_samples}; got ks={list(ks)}")
    rows, report = load(data_dir, limit)
    sampling = num_samples > 1
    gens = generate_until(
        model,
        tokenizer,
        [ex["prompt"] for ex in rows],
        stop=STOP,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_length=max_length,
        num_samples=num_samples,
        do_sample=sampling,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        add_bos=add_bos,
        accelerator=accelerator,
        progress=progress,
        desc="humaneval",
    )
    programs = [build_program(ex, c) for ex, cs in zip(rows, gens) for c in cs]
    outcomes = None
    if accelerator is None or accelerator.is_main_process:
        results = run_programs(
            programs,
            workers=workers,
            timeout=timeout,
            memory_mb=memory_mb,
            allow_code_execution=True,
            progress=progress,
            desc="humaneval: execute",
        )
        outcomes = [(r.status, r.stderr_tail[-500:]) for r in results]
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        outcomes = broadcast_object_list([outcomes], from_process=0)[0]
    statuses = [s for s, _ in outcomes]
    n = [num_samples] * len(rows)
    c = [sum(s == "passed" for s in statuses[j * num_samples : (j + 1) * num_samples]) for j in range(len(rows))]
    metrics = pass_at_k(n, c, ks) if rows else {f"pass@{k}": 0.0 for k in ks if k <= num_samples}
    metrics["status_counts"] = dict(Counter(statuses))
    config = {
        "num_samples": num_samples,
        "ks": list(ks),
        "do_sample": sampling,
        "temperature": temperature if sampling else None,
        "top_p": top_p if sampling else None,
        "max_new_tokens": max_new_tokens,
        "timeout": timeout,
        "memory_mb": memory_mb,
        "stop": list(STOP),
        "add_bos": add_bos,
    }
    samples = None
    if log_samples:
        samples = [
            {
                "task_id": ex["task_id"],
                "completions": gens[j],
                "statuses": statuses[j * num_samples : (j + 1) * num_samples],
                "stderr_tails": [t for _, t in outcomes[j * num_samples : (j + 1) * num_samples]],
            }
            for j, ex in enumerate(rows)
        ]
    out = task_result(metrics, n_scored=len(rows), reports=[report], config=config, samples=samples)
    out.update(protocol("humaneval", extra_metrics=[f"pass@{k}" for k in ks if int(k) != 1 or sampling]))
    return out


__all__ = ["MAX_NEW_TOKENS", "STOP", "TIMEOUT", "build_program", "evaluate_humaneval", "load", "parse_row"]
