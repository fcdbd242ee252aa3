"""Unbiased pass@k (evaluate module ``pass_at_k.py``, pure core ``core.py``)."""
