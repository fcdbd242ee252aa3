"""``python -m hf_muon.lab.demo``: see :mod:`hf_muon.lab.demo`."""

from .cli import cli

cli()
