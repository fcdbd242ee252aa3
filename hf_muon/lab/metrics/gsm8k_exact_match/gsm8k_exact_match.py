"""evaluate metric module ``gsm8k_exact_match``: GSM8K final-answer accuracy with numeric comparison.

Load it offline from its local path (no Hub access)::

    import evaluate
    m = evaluate.load("/path/to/hf_muon/metrics/gsm8k_exact_match")   # or hf_muon.lab.metrics.load("gsm8k_exact_match")
    m.compute(predictions=["... #### 1,000"], references=["... #### 1000"])   # {'exact_match': 1.0}

The definitions live in the sibling ``core.py`` (see its docstring). This script keeps ONE import per line:
evaluate scans module scripts with a regex and would read ``import a, b`` as a dependency named ``a,``.
"""

import datasets
import evaluate

from .core import gsm8k_exact_match

_CITATION = """\
@article{cobbe2021gsm8k,
  title={Training Verifiers to Solve Math Word Problems},
  author={Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and others},
  journal={arXiv preprint arXiv:2110.14168},
  year={2021}
}
"""

_DESCRIPTION = """\
Exact match of the final numeric answer of a GSM8K generation. The prediction's answer is the first "#### N",
else the first "The answer is N", else the last number in the text (lm-evaluation-harness strict / flexible
extraction). The reference is the number after "####" in a GSM8K answer (or the bare number). Both are normalised
(strip "$", ",", "%", spaces and a trailing ".") and compared numerically, so "1,000" equals "1000.0".
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): model generations.
    references (list of str): GSM8K ``answer`` fields ("... #### N") or bare numbers.
Returns:
    exact_match (float): fraction of examples whose final answers are numerically equal, in [0, 1].
Examples:
    >>> m = evaluate.load("hf_muon/metrics/gsm8k_exact_match")
    >>> m.compute(predictions=["So she pays $1,000.", "#### 7"], references=["#### 1000", "#### 8"])
    {'exact_match': 0.5}
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
            reference_urls=["https://github.com/openai/grade-school-math",
                            "https://github.com/EleutherAI/lm-evaluation-harness/tree/main/lm_eval/tasks/gsm8k"],
        )

    def _compute(self, predictions, references):
        return gsm8k_exact_match(list(predictions), list(references))
