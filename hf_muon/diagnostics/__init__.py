"""Diagnostics: spectral measures (pure), the Trainer callback, and the `hf-muon plot` command."""

from .spectral import layer_info, normalized_quantiles, orthogonality_error, svd_entropy

__all__ = ["layer_info", "normalized_quantiles", "orthogonality_error", "svd_entropy"]
