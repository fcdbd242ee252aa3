"""The demo's two flavours (full and ``--quick``), its model (:mod:`hf_muon.lab.models`) and its two optimizers."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ..models import llama_config, llama_from_config

OPTIMIZERS = ("adamw", "muon")
LABELS = {"adamw": "AdamW", "muon": "Muon"}


@dataclass
class Setup:
    """Model and data sizes of one demo flavour (full or ``--quick``)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    block_size: int
    batch_size: int
    steps: int
    max_tokens: int | None
    max_val_blocks: int
    logging_steps: int
    eval_points: int


FULL = Setup(
    hidden=128,
    layers=4,
    heads=4,
    intermediate=344,
    block_size=128,
    batch_size=8,
    steps=160,
    max_tokens=None,
    max_val_blocks=48,
    logging_steps=5,
    eval_points=4,
)
QUICK = Setup(
    hidden=32,
    layers=2,
    heads=2,
    intermediate=64,
    block_size=32,
    batch_size=4,
    steps=8,
    max_tokens=6_000,
    max_val_blocks=8,
    logging_steps=2,
    eval_points=1,
)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of returning it to the OS.

    Every step allocates fp32 logits of batch x seq x 50,257 (~200 MB) plus their gradients. glibc
    serves such blocks with ``mmap`` and unmaps them on free, so each step page-faults ~1 GB of fresh
    zeroed pages, kernel time that is a large share of a CPU step on small VMs. Only this demo process is
    affected; a no-op off glibc. Returns True when applied.
    """
    if not sys.platform.startswith("linux") or os.environ.get("HF_MUON_DEMO_MALLOC", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
        return bool(ok and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1)
    except (OSError, AttributeError):
        return False


def build_config(setup: Setup, vocab_size: int, eos_id: int):
    """A tiny ``LlamaConfig`` (:func:`hf_muon.lab.models.llama_config`; MHA, tied input/output embeddings, fp32)."""
    return llama_config(
        setup.hidden,
        setup.layers,
        vocab_size,
        setup.block_size,
        heads=setup.heads,
        intermediate_size=setup.intermediate,
        max_position_embeddings=max(256, setup.block_size),
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        dtype="float32",
    )


def build_model(config, seed: int):
    """``LlamaForCausalLM(config)`` with weights drawn from ``seed`` (identical for every run)."""
    import torch

    return llama_from_config(config, seed).to(torch.float32)


def make_optimizer(name: str, model, lr: float, weight_decay: float):
    """``torch.optim.AdamW`` or ``hf_muon.Muon`` with the same lr, betas and decay convention.

    Both decay ≥2-D weights and leave 1-D ones (norms) undecayed. Muon routes the hidden matrices to
    Muon and embeddings/norms to its internal AdamW groups (see :func:`hf_muon.param_groups`).
    """
    import torch

    import hf_muon

    if name == "adamw":
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if name == "muon":
        groups = hf_muon.param_groups(model, weight_decay=weight_decay)
        return hf_muon.Muon(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), eps=1e-8)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
