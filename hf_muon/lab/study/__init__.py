"""The pretraining-vs-SFT optimizer-mismatch study: config → pipeline stages → report and model cards."""

from .config import StudyConfig, load_config
from .pipeline import STAGES, run_study

__all__ = ["STAGES", "StudyConfig", "load_config", "run_study"]
