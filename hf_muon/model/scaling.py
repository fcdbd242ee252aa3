"""The update scale modes, re-exported from :mod:`hf_muon.ns.scaling` (their home: the lowest floor, so that
:mod:`hf_muon.config` can name them without importing the model layer)."""

from ..ns.scaling import SCALE_MODES, check_lr, convert_lr, fan_out_in, scale_factor

__all__ = ["SCALE_MODES", "check_lr", "convert_lr", "fan_out_in", "scale_factor"]
