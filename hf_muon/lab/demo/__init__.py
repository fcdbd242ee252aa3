"""AdamW vs ``hf_muon.Muon`` on a tiny Llama, same seed, data, lr and schedule, through HF ``Trainer``.

Run::

    python -m hf_muon.lab.demo --data ../shared/data --out runs/demo          # ~3 min on 2 CPU cores
    python -m hf_muon.lab.demo --data ../shared/data --out /tmp/q --quick     # smoke test, < 30 s

It builds a small ``LlamaForCausalLM`` from a config (GPT-2 vocabulary, 50,257 tokens; tied
embeddings), tokenizes the local TinyStories sample into fixed-length blocks (last ~10% held out),
and trains the same initial weights twice: once with ``torch.optim.AdamW`` and once with
``hf_muon.Muon`` (default ``moonlight`` scaling, so the AdamW learning rate is reused as is). Both
optimizers are handed to ``Trainer(optimizers=(opt, None))``, so the Trainer builds the same
warmup+cosine schedule for both. fp32, CPU.

Printed: the routing counts (which tensors Muon updates), both training-loss curves side by side,
validation loss at a few points and final validation loss / perplexity. Written to ``--out``:
``demo.json`` (table and numbers) and ``demo.png`` (the curves).

What to expect (2 CPU cores, defaults, 160 steps; validation loss, lower is better): AdamW 5.54,
Muon 4.39. The comparison is at one shared lr, and AdamW is past its best there (a loss spike near
step 30). In a small sweep of that setup AdamW did best at 2e-3 (4.99), and Muon beat that at every
lr from 2e-3 up (4.59 at 2e-3, 4.11 at 1e-2). At 1e-3 the two were close (5.26 vs 5.22). Muon's gain
here comes from staying stable, and improving, at learning rates where AdamW's hidden matrices do not.
"""

from __future__ import annotations

from .cli import cli, main, parse_args
from .report import format_table, loss_table, save_plot, steps_to_reach, summarize
from .setup import (
    FULL,
    LABELS,
    OPTIMIZERS,
    QUICK,
    Setup,
    build_config,
    build_model,
    keep_freed_memory,
    make_optimizer,
)
from .trainer import train_one

__all__ = [
    "FULL",
    "LABELS",
    "OPTIMIZERS",
    "QUICK",
    "Setup",
    "build_config",
    "build_model",
    "cli",
    "format_table",
    "keep_freed_memory",
    "loss_table",
    "main",
    "make_optimizer",
    "parse_args",
    "save_plot",
    "steps_to_reach",
    "summarize",
    "train_one",
]
