"""Tiny HuggingFace models built from configs (never downloaded): the lab's one home for them.

* :func:`llama_intermediate`: the SwiGLU hidden width, ``width·mlp_ratio`` rounded to a multiple of 8.
* :func:`llama_config` / :func:`llama_from_config` / :func:`build_llama`: a ``LlamaForCausalLM`` (by default
  ``width // head_dim`` heads, MHA, SwiGLU MLP of ``8/3·width``, tied embeddings; every field a knob).
* :func:`build_gpt2`: a ``GPT2LMHeadModel`` (tied head, dropout 0 as in nanoGPT's 124M runs).
* :func:`param_counts`: total / embedding / non-embedding parameter counts.

Each builder seeds ``torch.manual_seed(seed)`` right before constructing the model, so the same
arguments give the same weights.
"""

from __future__ import annotations

import torch


def quiet_transformers() -> None:
    """Silence transformers' info/warning logs (config notes about ids and loss types)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except Exception:  # pragma: no cover
        pass


def llama_intermediate(width: int, mlp_ratio: float = 8 / 3, multiple: int = 8) -> int:
    """SwiGLU hidden width: ``width·mlp_ratio`` rounded to a multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, int(round(width * mlp_ratio / multiple)) * multiple)


def llama_config(
    width: int,
    layers: int,
    vocab_size: int,
    block_size: int,
    *,
    head_dim: int = 32,
    heads: int | None = None,
    kv_heads: int | None = None,
    intermediate_size: int | None = None,
    mlp_ratio: float = 8 / 3,
    max_position_embeddings: int | None = None,
    tie_word_embeddings: bool = True,
    bos_token_id: int | None = 0,
    eos_token_id: int | None = 0,
    pad_token_id: int | None = None,
    **extra,
):
    """A ``LlamaConfig``: ``heads`` (default ``width // head_dim``) attention heads, ``kv_heads`` (default
    ``heads``: MHA) key/value heads, a SwiGLU MLP of ``intermediate_size`` (default
    :func:`llama_intermediate` of ``width`` and ``mlp_ratio``), ``max_position_embeddings`` (default
    ``block_size``). ``extra`` goes to ``LlamaConfig`` as is (e.g. ``dtype="float32"``)."""
    from transformers import LlamaConfig

    heads = max(1, width // head_dim) if heads is None else heads
    kv_heads = heads if kv_heads is None else kv_heads
    inter = llama_intermediate(width, mlp_ratio) if intermediate_size is None else intermediate_size
    positions = block_size if max_position_embeddings is None else max_position_embeddings
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=positions,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        **extra,
    )


def llama_from_config(config, seed: int = 0):
    """``LlamaForCausalLM(config)`` with weights drawn right after ``torch.manual_seed(seed)``."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def build_llama(width: int, layers: int, vocab_size: int, block_size: int, *, seed: int = 0, **knobs):
    """A ``LlamaForCausalLM`` from :func:`llama_config` (``knobs``: its keyword arguments; defaults: MHA with
    ``width // 32`` heads, SwiGLU MLP of ``8/3·width``, tied embeddings), initialised from ``seed``."""
    return llama_from_config(llama_config(width, layers, vocab_size, block_size, **knobs), seed)


def build_gpt2(width: int, layers: int, heads: int, vocab_size: int, block_size: int, *, seed: int = 0):
    """A ``GPT2LMHeadModel`` from a config (tied head, dropout 0 as in nanoGPT's 124M runs)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        n_positions=block_size,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(cfg)


def param_counts(model) -> dict:
    """Parameter counts: ``total``, ``embedding`` (token/position tables and an untied head) and ``non_embedding``."""
    emb_ids = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        mod = getattr(model, getter, lambda: None)()
        if mod is not None:
            emb_ids.update(id(p) for p in mod.parameters())
    for mod in model.modules():
        if isinstance(mod, torch.nn.Embedding):
            emb_ids.update(id(p) for p in mod.parameters())
    seen, total, emb = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        emb += p.numel() if id(p) in emb_ids else 0
    return {"total": total, "embedding": emb, "non_embedding": total - emb}


__all__ = [
    "build_gpt2",
    "build_llama",
    "llama_config",
    "llama_from_config",
    "llama_intermediate",
    "param_counts",
    "quiet_transformers",
]
