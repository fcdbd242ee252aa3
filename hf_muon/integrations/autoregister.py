"""Register ``--optim muon`` without importing transformers at ``import hf_muon`` time.

If transformers' modules are already imported, register now. Otherwise a meta-path hook waits for
``transformers.training_args`` (then adds ``OptimizerNames.MUON``, which argparse choices and
``TrainingArguments`` need) and ``transformers.trainer_optimizer`` (then adds the handler), and runs
the registration right after each module has executed. The hook removes itself once both are done.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

_TARGETS = ("transformers.training_args", "transformers.trainer_optimizer")


def _on_loaded(fullname: str) -> None:
    try:
        from . import transformers as adapter

        if fullname == "transformers.training_args":
            adapter.register_name()
        else:
            adapter.register_handler()
    except Exception as e:  # never break importing transformers itself
        import warnings

        warnings.warn(f"hf_muon could not register --optim muon with {fullname}: {e!r}", stacklevel=2)


class _LoaderWrapper(importlib.abc.Loader):
    def __init__(self, loader, fullname):
        self._loader, self._fullname = loader, fullname

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _on_loaded(self._fullname)

    def __getattr__(self, name):  # get_source, get_code, is_package, … for tools that ask
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.pending = set(_TARGETS)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderWrapper(spec.loader, fullname)
        return spec


def install() -> None:
    """Register now for already-imported modules; hook the rest (idempotent)."""
    pending = []
    for name in _TARGETS:
        if name in sys.modules:
            _on_loaded(name)
        else:
            pending.append(name)
    if pending and not any(isinstance(f, _Finder) for f in sys.meta_path):
        finder = _Finder()
        finder.pending = set(pending)
        sys.meta_path.insert(0, finder)
