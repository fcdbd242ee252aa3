"""TRL adapter: ``MuonSFTTrainer`` (any other TRL trainer: ``class X(MuonTrainerMixin, DPOTrainer)``)."""

from __future__ import annotations

from trl import SFTTrainer

from .trainer import MuonTrainerMixin


class MuonSFTTrainer(MuonTrainerMixin, SFTTrainer):
    """``trl.SFTTrainer`` that trains with :class:`hf_muon.Muon` (PEFT ``peft_config`` included)."""
