"""Hypothesis profiles for the property tests: ``default`` keeps the default suite's share small; ``slow`` (selected
with ``HF_MUON_HYPOTHESIS=slow``, which ``make test-slow`` / CI can export) runs many more examples."""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
               derandomize=True, print_blob=True)
settings.register_profile("default", max_examples=30, **_COMMON)
settings.register_profile("slow", max_examples=400, **_COMMON)
settings.load_profile(os.environ.get("HF_MUON_HYPOTHESIS", "default"))
