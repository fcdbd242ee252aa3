"""evaluate metric module ``pass_at_k``: the unbiased pass@k estimator from per-problem sample / pass counts.

This module only *scores* counts; it never runs code. Running generated programs is
``hf_muon.lab.evaluation.sandbox`` (opt-in, sandboxed subprocesses). Load offline from the local path::

    m = hf_muon.lab.metrics.load("pass_at_k")
    m.compute(num_samples=[5], num_correct=[2], k=[1, 2])     # pass@1 ~= 0.4, pass@2 = 0.7 (floats)

Definitions in the sibling ``core.py``. ONE import per line (evaluate's dependency scan needs it).
"""

import datasets
import evaluate

from .core import pass_at_k

_DESCRIPTION = """\
Unbiased pass@k (Chen et al., 2021): for a problem with n samples of which c pass,
pass@k = 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i); averaged over problems.
k values larger than the smallest n are left out.
"""

_KWARGS_DESCRIPTION = """
Args:
    num_samples (list of int): n, samples generated per problem.
    num_correct (list of int): c, samples that passed per problem.
    k (list of int, optional, default [1]): the k values to report.
Returns:
    pass@k (float) for each requested k <= min(n).
Examples:
    >>> m = evaluate.load("hf_muon/metrics/pass_at_k")
    >>> round(m.compute(num_samples=[5, 5], num_correct=[2, 0], k=[1])["pass@1"], 6)
    0.2
"""

_CITATION = """\
@article{chen2021codex,
  title={Evaluating Large Language Models Trained on Code},
  author={Mark Chen and Jerry Tworek and Heewoo Jun and others},
  journal={arXiv preprint arXiv:2107.03374},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PassAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"num_samples": datasets.Value("int64"), "num_correct": datasets.Value("int64")}
            ),
            reference_urls=["https://github.com/openai/human-eval"],
        )

    def _compute(self, num_samples, num_correct, k=(1,)):
        return pass_at_k(list(num_samples), list(num_correct), ks=k)
