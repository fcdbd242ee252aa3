"""Model-side evaluation for the optimizer study: log-likelihood scoring, generation, sandboxed code execution, and
benchmark tasks (MMLU, ARC-Easy / -Challenge, GSM8K, HumanEval, BLiMP: lm-evaluation-harness parity; perplexity, held-out SFT
loss), accelerate-aware.

One module per concern:

* :mod:`.harness`: what the tasks follow in lm-evaluation-harness (pinned version, task / metric names, samplers);
* :mod:`.loglik`: batched continuation log-likelihoods (lm-evaluation-harness conventions);
* :mod:`.generation`: batched greedy / sampled generation with stop strings;
* :mod:`.sandbox`: opt-in, resource-limited subprocess execution of generated programs;
* :mod:`.sources`: mirror / Hub loading with malformed-row counting;
* :mod:`.mmlu`, :mod:`.arc`, :mod:`.gsm8k`, :mod:`.humaneval`, :mod:`.blimp`, :mod:`.perplexity`, :mod:`.sft_loss`: the tasks;
* :mod:`.runner`: :func:`evaluate_model` (the native backend);
* :mod:`.lm_eval_backend`: the same tasks and result layout run by lm-evaluation-harness itself (optional extra);
* :mod:`.cli`: ``hf-muon score MODEL_DIR --backend native|lm-eval``.

Metric definitions live in :mod:`hf_muon.lab.metrics` (also loadable as offline evaluate modules).
"""

from .arc import evaluate_arc_challenge, evaluate_arc_easy
from .blimp import evaluate_blimp
from .generation import generate_until
from .gsm8k import evaluate_gsm8k
from .harness import LM_EVAL_VERSION
from .humaneval import evaluate_humaneval
from .loglik import LoglikResult, encode_pair, loglikelihood, loglikelihood_tokens
from .mmlu import evaluate_mmlu
from .perplexity import evaluate_perplexity, sequence_nll
from .runner import DEFAULT_TASKS, TASKS, evaluate_model
from .sandbox import CodeExecutionNotAllowed, ExecutionResult, run_program, run_programs
from .sft_loss import evaluate_sft_loss

__all__ = [
    "DEFAULT_TASKS",
    "LM_EVAL_VERSION",
    "TASKS",
    "CodeExecutionNotAllowed",
    "ExecutionResult",
    "LoglikResult",
    "encode_pair",
    "evaluate_arc_challenge",
    "evaluate_arc_easy",
    "evaluate_blimp",
    "evaluate_gsm8k",
    "evaluate_humaneval",
    "evaluate_mmlu",
    "evaluate_model",
    "evaluate_perplexity",
    "evaluate_sft_loss",
    "generate_until",
    "loglikelihood",
    "loglikelihood_tokens",
    "run_program",
    "run_programs",
    "sequence_nll",
]
