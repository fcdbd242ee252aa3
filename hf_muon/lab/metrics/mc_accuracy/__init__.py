"""Multiple-choice accuracy from log-likelihoods (evaluate module ``mc_accuracy.py``, pure core ``core.py``)."""
