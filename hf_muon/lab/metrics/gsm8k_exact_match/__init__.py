"""GSM8K final-answer exact match (evaluate module ``gsm8k_exact_match.py``, pure core ``core.py``)."""
