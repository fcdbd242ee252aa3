"""Unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"): pure functions.

For one problem with ``n`` generated samples of which ``c`` pass the tests,

    pass@k = E[1 - C(n - c, k) / C(n, k)] = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

the probability that at least one of ``k`` samples drawn without replacement from the ``n`` passes. The product form
avoids the huge binomials. If ``n - c < k`` every draw of ``k`` contains a passing sample and pass@k = 1. The
reported value is the mean over problems. As in the reference HumanEval code and evaluate's ``code_eval``, a ``k``
larger than some problem's ``n`` is undefined and is left out of the result (no key), never extrapolated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k for one problem with ``n`` samples, ``c`` correct: ``1 - C(n-c, k) / C(n, k)`` (product form)."""
    n, c, k = int(n), int(c), int(k)
    if n < 1 or k < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1, k >= 1 and 0 <= c <= n; got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} is undefined with only n={n} samples")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k(num_samples: Sequence[int], num_correct: Sequence[int], ks: Iterable[int] = (1,)) -> dict[str, float]:
    """``{"pass@k": mean over problems}`` for each ``k`` in ``ks`` with ``k <= min(num_samples)``."""
    if len(num_samples) != len(num_correct):
        raise ValueError(f"{len(num_samples)} sample counts but {len(num_correct)} correct counts")
    out: dict[str, float] = {}
    if not num_samples:
        return out
    smallest = min(int(n) for n in num_samples)
    for k in ks:
        if int(k) > smallest:
            continue
        vals = [estimate_pass_at_k(n, c, k) for n, c in zip(num_samples, num_correct)]
        out[f"pass@{int(k)}"] = sum(vals) / len(vals)
    return out


__all__ = ["estimate_pass_at_k", "pass_at_k"]
