"""evaluate metric module ``gsm8k_exact_match``: GSM8K final-answer accuracy, lm-evaluation-harness style.

Load it offline from its local path (no Hub access)::

    import evaluate
    m = evaluate.load("/path/to/hf_muon/metrics/gsm8k_exact_match")   # or hf_muon.lab.metrics.load("gsm8k_exact_match")
    m.compute(predictions=["... #### 1,000"], references=["... #### 1000"])
    # {'strict-match': 1.0, 'flexible-extract': 1.0, 'numeric_match': 1.0}

The definitions live in the sibling ``core.py`` (see its docstring). This script keeps ONE import per line:
evaluate scans module scripts with a regex and would read ``import a, b`` as a dependency named ``a,``.
"""

import datasets
import evaluate

from .core import gsm8k_exact_match, gsm8k_harness_scores

_CITATION = """\
@article{cobbe2021gsm8k,
  title={Training Verifiers to Solve Math Word Problems},
  author={Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and others},
  journal={arXiv preprint arXiv:2110.14168},
  year={2021}
}
"""

_DESCRIPTION = """\
Exact match of the final answer of a GSM8K generation, as lm-evaluation-harness 0.4.13 defines it for its gsm8k
task: "strict-match" takes the first "#### N" of the generation, "flexible-extract" the last number-like run; each
is compared with the reference answer field after removing ",", "$", everything up to the last "#### " and a
trailing "." (case-insensitive string equality). "numeric_match" is hf_muon's lenient extra metric: the first
"#### N" (also "####N", "#### $N"), else "The answer is N", else the last number, compared numerically.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): model generations.
    references (list of str): GSM8K ``answer`` fields ("... #### N") or bare numbers.
Returns:
    strict-match (float): lm-eval gsm8k strict-match exact match, in [0, 1].
    flexible-extract (float): lm-eval gsm8k flexible-extract exact match, in [0, 1].
    numeric_match (float): the lenient numeric match, in [0, 1].
Examples:
    >>> m = evaluate.load("hf_muon/metrics/gsm8k_exact_match")
    >>> m.compute(predictions=["So she pays $1,000.", "#### 7"], references=["#### 1000", "#### 8"])
    {'strict-match': 0.0, 'flexible-extract': 0.5, 'numeric_match': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Gsm8kExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=[
                "https://github.com/openai/grade-school-math",
                "https://github.com/EleutherAI/lm-evaluation-harness/tree/main/lm_eval/tasks/gsm8k",
            ],
        )

    def _compute(self, predictions, references):
        predictions, references = list(predictions), list(references)
        out = gsm8k_harness_scores(predictions, references)
        out["numeric_match"] = gsm8k_exact_match(predictions, references)["exact_match"]
        return out
