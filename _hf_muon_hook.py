"""Arms hf_muon's registration of ``--optim muon`` at interpreter start, importing nothing heavy.

Installed beside ``hf_muon`` with a one-line startup file, ``hf_muon-autoregister.pth``, which calls
:func:`install` unless ``HF_MUON_AUTOREGISTER=0``. :func:`install` only puts a meta-path finder in front of
the import system; it waits for ``transformers.training_args`` (then adds ``OptimizerNames.MUON``, which
argparse choices, YAML/JSON configs and pickled ``training_args.bin`` need) and
``transformers.trainer_optimizer`` (then adds the handler), runs the registration right after each of those
modules executed, and removes itself once both are done. Until then nothing of hf_muon (or torch) is imported.
``import hf_muon`` installs the same finder, so environments without startup files (``python -S``) can import
hf_muon or use ``python -m hf_muon.run``.
"""

from __future__ import annotations

import os
import sys

TARGETS = ("transformers.training_args", "transformers.trainer_optimizer")
ENV = "HF_MUON_AUTOREGISTER"


def disabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off")


def _on_loaded(fullname: str) -> None:
    try:
        from hf_muon.integrations import transformers as adapter

        if fullname == "transformers.training_args":
            adapter.register_name()
        else:
            adapter.register_handler()
    except Exception as e:  # never break importing transformers itself
        import warnings

        warnings.warn(f"hf_muon could not register --optim muon with {fullname}: {e!r}", stacklevel=2)


class _Loader:
    """Wraps the real loader: execute the module, then register."""

    def __init__(self, loader, fullname):
        self._loader, self._fullname = loader, fullname

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _on_loaded(self._fullname)

    def __getattr__(self, name):  # get_source, get_code, is_package, … for tools that ask
        return getattr(self._loader, name)


class Finder:
    def __init__(self, pending):
        self.pending = set(pending)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, fullname)
        return spec


def install() -> None:
    """Register now for already-imported targets; hook the rest (idempotent)."""
    pending = []
    for name in TARGETS:
        if name in sys.modules:
            _on_loaded(name)
        else:
            pending.append(name)
    if pending and not any(isinstance(f, Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, Finder(pending))


def startup() -> None:
    """What the .pth file runs."""
    if not disabled():
        install()
