"""evaluate metric module ``mc_accuracy``: multiple-choice ``acc`` / ``acc_norm`` from per-choice log-likelihoods.

Load it offline from its local path (no Hub access)::

    m = hf_muon.lab.metrics.load("mc_accuracy")          # evaluate.load(<package dir>/mc_accuracy)
    m.compute(predictions=[[-3.0, -6.1, -3.2]], references=[1], choice_lengths=[[7, 34, 5]])
    # {'acc': 0.0, 'acc_norm': 1.0}

Definitions, tie-breaking and the lm-evaluation-harness conventions are in the sibling ``core.py``. This script keeps
ONE import per line (evaluate's dependency scan reads ``import a, b`` as a package named ``a,``).
"""

import datasets
import evaluate

from .core import mc_accuracy

_DESCRIPTION = """\
Accuracy of multiple-choice scoring by log-likelihood. For each example the model's summed log-likelihood of every
choice continuation is given. acc = argmax of the summed log-likelihood; acc_norm = argmax of log-likelihood divided
by the choice length in characters (lm-evaluation-harness acc_norm: len() of the choice string without the leading
space). Optional: acc_bytes (divide by UTF-8 byte length) and acc_per_token (divide by token count). Ties go to the
lowest index; NaN log-likelihoods are never chosen.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): per-example, per-choice summed log-likelihoods.
    references (list of int): gold choice index per example.
    choice_lengths (list of list of float): per-choice length in characters (for acc_norm).
    choice_byte_lengths (list of list of float, optional, compute() only): UTF-8 byte lengths -> acc_bytes.
    choice_token_lengths (list of list of float, optional, compute() only): token counts -> acc_per_token.
Returns:
    acc (float), acc_norm (float), and acc_bytes / acc_per_token when their lengths are given; each in [0, 1].
Examples:
    >>> m = evaluate.load("hf_muon/metrics/mc_accuracy")
    >>> m.compute(predictions=[[-1.0, -2.0], [-5.0, -4.0]], references=[0, 0], choice_lengths=[[1, 1], [1, 10]])
    {'acc': 0.5, 'acc_norm': 0.5}
"""

_CITATION = """\
@misc{eval-harness,
  author = {Gao, Leo and Tow, Jonathan and others},
  title = {A framework for few-shot language model evaluation},
  publisher = {Zenodo},
  year = {2023},
  url = {https://github.com/EleutherAI/lm-evaluation-harness}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class McAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                    "choice_lengths": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=[
                "https://github.com/EleutherAI/lm-evaluation-harness",
                "https://blog.eleuther.ai/multiple-choice-normalization/",
            ],
        )

    def _compute(self, predictions, references, choice_lengths, choice_byte_lengths=None, choice_token_lengths=None):
        return mc_accuracy(
            predictions,
            references,
            choice_lengths=choice_lengths,
            choice_byte_lengths=choice_byte_lengths,
            choice_token_lengths=choice_token_lengths,
        )
