"""Run an unmodified training script with ``--optim muon`` available.

    python -m hf_muon.run SCRIPT.py ARGS...        # like `python SCRIPT.py ARGS...`
    python -m hf_muon.run -m MODULE ARGS...        # like `python -m MODULE ARGS...`
    hf-muon run ...                                # the same, as a console command

Registration happens before the script builds its ``HfArgumentParser`` (whose ``--optim`` choices are
frozen at construction), then the script runs as ``__main__`` with ``sys.argv[0]`` set to its path, as
Python would (``HfArgumentParser`` looks for ``<script>.args`` beside it). Works under ``torchrun`` and
``accelerate launch -m hf_muon.run ...``: each worker process registers, then runs the script.
"""

from __future__ import annotations

import runpy
import sys

USAGE = "usage: python -m hf_muon.run [-m MODULE | SCRIPT.py] [ARGS...]"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    try:
        import transformers  # noqa: F401
    except ImportError:
        print('hf-muon run needs transformers (and accelerate): pip install "hf_muon[hf]"', file=sys.stderr)
        raise SystemExit(1) from None
    from .integrations.transformers import register

    register()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            raise SystemExit(2)
        module = argv[1]
        sys.argv = [module, *argv[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = argv[0]
        sys.argv = [script, *argv[1:]]
        import os

        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
