"""Shared fixtures: the local data mirror and tiny HF models built from configs (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

try:  # hypothesis profiles for tests/property: "default" keeps the default suite's share small; "slow" (selected with
    # HF_MUON_HYPOTHESIS=slow) searches more; the property tests also run as `slow` tests with more examples
    from hypothesis import HealthCheck, settings

    _HYPOTHESIS = dict(
        deadline=None,
        derandomize=True,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.register_profile("default", max_examples=30, **_HYPOTHESIS)
    settings.register_profile("slow", max_examples=400, **_HYPOTHESIS)
    settings.load_profile(os.environ.get("HF_MUON_HYPOTHESIS", "default"))
except ImportError:  # the dev extra is not installed: tests/property skips itself
    pass


def data_dir() -> Path:
    env = os.environ.get("HF_MUON_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO / ".." / "shared" / "data"]:
        if (cand / "README.md").exists():
            return cand.resolve()
    pytest.skip("local data mirror ../shared/data not found (set HF_MUON_DATA)")


@pytest.fixture
def shared_data() -> Path:
    return data_dir()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def with_spectrum(m: int, n: int, sigmas, seed: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """``U diag(sigmas) Vᵀ`` (m × n) with random orthonormal U, V: from ``seed``, or the global generator."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    U, _ = torch.linalg.qr(torch.randn(m, len(sigmas), generator=g, dtype=dtype))
    V, _ = torch.linalg.qr(torch.randn(n, len(sigmas), generator=g, dtype=dtype))
    return (U * torch.as_tensor(sigmas, dtype=dtype)) @ V.mT


def llama_for(tok, folder=None, **config):
    """A tiny Llama (hidden 32, 2 layers, 4 heads, 2 KV heads unless ``config`` says otherwise) sized to the
    tokenizer ``tok`` and using its BOS/EOS ids; saved with ``tok`` as a ``--model_name_or_path`` folder when
    ``folder`` is given (then the folder is returned)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(LlamaConfig(**{**shape, **ids, **config}))
    if folder is None:
        return model
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_llama(tie: bool = False, vocab: int = 128, hidden: int = 32, layers: int = 2):
    """A tiny GQA Llama from the project's one Llama config builder (hf_muon.lab.models.llama_config)."""
    from transformers import LlamaForCausalLM

    from hf_muon.lab.models import llama_config

    return LlamaForCausalLM(
        llama_config(
            hidden,
            layers,
            vocab,
            2048,
            heads=4,
            kv_heads=2,
            intermediate_size=2 * hidden,
            tie_word_embeddings=tie,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=None,
        )
    )


def tiny_qwen3():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            bos_token_id=0,
            eos_token_id=1,
        )
    )


def tiny_qwen3_moe(**overrides):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=4,
        num_experts_per_tok=2,
        head_dim=8,
        bos_token_id=0,
        eos_token_id=1,
    )
    return Qwen3MoeForCausalLM(Qwen3MoeConfig(**{**config, **overrides}))


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=1)
    )


def tiny_bert_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(
        BertConfig(
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            num_labels=3,
        )
    )


def child_env(**extra) -> dict:
    """The environment of a test's child process: offline Hub, one OpenMP thread (the suite runs on 2 shared
    cores), quiet tokenizers and the checkout on ``PYTHONPATH``; ``extra`` adds or replaces (``None`` removes)."""
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return {k: str(v) for k, v in env.items() if v is not None}


def free_port() -> int:
    """A TCP port that is free right now (for torchrun/accelerate rendezvous in tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights_only_resume(model, opt, make):
    """A copy of ``model`` and a fresh ``make(copy)`` optimizer, both loaded from a ``torch.save`` of their
    state dicts read back with ``torch.load(weights_only=True)`` (a checkpoint resume)."""
    import copy
    import io

    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "model": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2 = copy.deepcopy(model)
    model2.load_state_dict(ckpt["model"])
    opt2 = make(model2)
    opt2.load_state_dict(ckpt["opt"])
    return model2, opt2


def gpt2_tokenizer(chat: bool = True):
    """The mirror's GPT-2 tokenizer, with the Tulu chat template when ``chat``."""
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast(tokenizer_file=str(data_dir() / "tokenizers" / "gpt2" / "tokenizer.json"))
    if not chat:
        return tok
    from hf_muon.lab.chat import prepare_chat_tokenizer

    return prepare_chat_tokenizer(tok)


def chat_llama(folder: Path) -> Path:
    """A tiny Llama and the chat GPT-2 tokenizer saved as a ``--model_name_or_path`` folder (built from a config)."""
    return llama_for(gpt2_tokenizer(), folder)


def muon_groups(optimizer_pt: Path) -> list:
    """The Muon param groups of a Trainer checkpoint's ``optimizer.pt`` (read with ``weights_only=True``)."""
    sd = torch.load(optimizer_pt, weights_only=True)
    return [g for g in sd["param_groups"] if g.get("use_muon")]


def flags(**kw) -> list[str]:
    """``--key value`` command-line flags in order; a ``None`` value leaves its flag out."""
    return [x for k, v in kw.items() if v is not None for x in (f"--{k}", str(v))]


def clm_args(out, steps: int = 6, **extra) -> list[str]:
    """Flags of the shared tiny ``tests/scripts/train_clm.py`` run (TinyStories head, GPT-2 tokenizer, CPU,
    ``--optim muon``, no saves); ``extra`` adds or replaces flags (``None`` removes one)."""
    d = data_dir()
    base = dict(
        train_file=d / "pretrain" / "tinystories_validation_head.txt",
        tokenizer_dir=d / "tokenizers" / "gpt2",
        output_dir=out,
        use_cpu="true",
        report_to="none",
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate="3e-3",
        logging_steps=1,
        seed=0,
        disable_tqdm="true",
        save_strategy="no",
        optim="muon",
    )
    return flags(**{**base, **extra})


def sft_args(model_dir, data, out, steps: int = 2, **extra) -> list[str]:
    """Flags of a tiny ``trl sft`` run on a tulu folder (fp32 on CPU, ``--optim muon``, a checkpoint at the last
    step); ``extra`` adds or replaces flags (``None`` removes one, e.g. ``optim=None`` when a config sets it)."""
    base = dict(
        model_name_or_path=model_dir,
        dataset_name=data,
        output_dir=out,
        optim="muon",
        max_steps=steps,
        save_steps=steps,
        per_device_train_batch_size=2,
        max_length=128,
        bf16="false",
        gradient_checkpointing="false",
        use_cpu="true",
        report_to="none",
        learning_rate="3e-3",
        dtype="float32",
    )
    return flags(**{**base, **extra})


def example_trainer_args(model_dir, out, **extra) -> list[str]:
    """Flags of ``examples/trainer.py`` as the docs run it, at tiny size (2 steps, a checkpoint at step 2)."""
    base = dict(
        model_name_or_path=model_dir,
        train_file=data_dir() / "pretrain" / "tinystories_validation_head.txt",
        output_dir=out,
        optim="muon",
        optim_args="ns_steps=5",
        learning_rate="3e-3",
        max_steps=2,
        save_steps=2,
        block_size=32,
        max_chars=20000,
        per_device_train_batch_size=4,
        use_cpu="true",
        report_to="none",
        disable_tqdm="true",
    )
    return flags(**{**base, **extra})
