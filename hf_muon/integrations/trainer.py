"""``MuonTrainer`` and the mixin that gives any Trainer subclass (SFTTrainer, DPOTrainer, …) hf_muon."""

from __future__ import annotations

try:
    from transformers import Trainer
except ImportError as e:  # a torch-only install
    raise ImportError('hf_muon.MuonTrainer needs transformers and accelerate: pip install "hf_muon[hf]"') from e

from .transformers import HF_NAME, build_optimizer, register_name, selects_hf_muon


class MuonTrainerMixin:
    """Put before a ``transformers.Trainer`` subclass in the bases to train with :class:`hf_muon.Muon`.

    ``muon_optim_args`` (a dict or ``"k=v,…"``; class attribute or ``__init__`` keyword) sets Muon's
    knobs; without it, ``args.optim_args`` is used when ``args.optim`` selects hf_muon. Learning rate, weight
    decay, betas and eps come from the Trainer's ``args``. ``args.optim`` is set to ``hf_muon`` (unless it
    already names hf_muon), so ``training_args.bin`` records the optimizer that runs.
    """

    muon_optim_args = None

    def __init__(self, *args, muon_optim_args=None, **kwargs):
        if muon_optim_args is not None:
            self.muon_optim_args = muon_optim_args
        super().__init__(*args, **kwargs)
        if not selects_hf_muon(getattr(self.args, "optim", None)):
            if self.muon_optim_args is None and getattr(self.args, "optim_args", None):
                self.muon_optim_args = ""  # the other optimizer's optim_args are not hf_muon's
            register_name()
            from transformers.training_args import OptimizerNames

            self.args.optim = OptimizerNames(HF_NAME)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optim_args = self.muon_optim_args
            if optim_args is None:
                optim_args = self.args.optim_args
            self.optimizer = build_optimizer(opt_model, self.args, optim_args if optim_args is not None else "")
        return super().create_optimizer(model)


class MuonTrainer(MuonTrainerMixin, Trainer):
    """``transformers.Trainer`` that always trains with :class:`hf_muon.Muon`."""
