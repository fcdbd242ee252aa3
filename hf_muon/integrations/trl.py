"""TRL adapter: ``MuonSFTTrainer`` (any other TRL trainer: ``class X(MuonTrainerMixin, DPOTrainer)``)."""

from __future__ import annotations

try:
    from trl import SFTTrainer
except ImportError as e:  # no TRL installed
    raise ImportError('hf_muon.MuonSFTTrainer needs TRL: pip install "hf_muon[trl]"') from e

from .trainer import MuonTrainerMixin


class MuonSFTTrainer(MuonTrainerMixin, SFTTrainer):
    """``trl.SFTTrainer`` that trains with :class:`hf_muon.Muon` (PEFT ``peft_config`` included)."""
