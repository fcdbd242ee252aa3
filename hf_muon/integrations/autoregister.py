"""Register ``--optim muon`` without importing transformers at ``import hf_muon`` time.

The finder lives in the top-level module ``_hf_muon_hook`` (installed beside this package), so the
interpreter-start hook ``hf_muon-autoregister.pth`` can arm it without importing hf_muon or torch; importing
hf_muon arms the same finder (for ``python -S`` and other environments without startup files). See
``_hf_muon_hook`` for how the registration runs and ``HF_MUON_AUTOREGISTER=0`` for turning the startup hook off.
"""

from __future__ import annotations

import _hf_muon_hook

TARGETS = _hf_muon_hook.TARGETS


def install() -> None:
    """Register now for already-imported transformers modules; hook the rest (idempotent)."""
    _hf_muon_hook.install()


__all__ = ["TARGETS", "install"]
