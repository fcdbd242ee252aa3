"""The benchmark models: one registry. Built from configs with random weights, never downloaded.

* :data:`MODELS`: the named models (each with a tiny variant for smoke runs): ``llama-7.4M``, ``gpt2-small``,
  ``qwen3-moe-tiny`` (optimizer step, distributed bytes) and ``llama-60M-deep`` (distributed bytes).
* :data:`SCALING_SIZES` / :data:`SCALING_TINY`: the Llama family grown in width and depth (its h256-L4 is
  ``llama-7.4M``).
* :func:`convergence_llama`, :func:`trainer_llama`: the Llamas trained on real text (their vocabulary comes
  from the data).
* :data:`BALANCE_SHAPES`: Llama shapes whose Muon matrices are only counted, never built.

Every builder seeds Python, NumPy and torch with ``MODEL_SEED`` right before constructing the model, so the
same arguments give the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .machine import seed_everything

MODEL_SEED = 0


def llama(hidden: int, layers: int, intermediate: int, vocab: int, *, heads: int = 4, **config) -> nn.Module:
    """An untied fp32 ``LlamaForCausalLM`` with MHA (``heads`` query and key/value heads); ``config`` adds fields.
    The config comes from the project's one Llama builder (:func:`hf_muon.lab.models.llama_config`), with
    ``LlamaConfig``'s own defaults for positions and token ids unless ``config`` sets them."""
    from transformers import LlamaForCausalLM

    from hf_muon.lab.models import llama_config

    config = {"max_position_embeddings": 2048, "bos_token_id": 1, "eos_token_id": 2, **config}
    positions = config.pop("max_position_embeddings")
    return LlamaForCausalLM(
        llama_config(
            hidden,
            layers,
            vocab,
            positions,
            heads=heads,
            intermediate_size=intermediate,
            tie_word_embeddings=False,
            **config,
        )
    ).float()


def gpt2(tiny: bool) -> nn.Module:
    """GPT-2 small: the default GPT2Config (124M params, tied embeddings); tiny: 64 wide, 2 layers."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = (
        GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=512, n_positions=128, bos_token_id=0, eos_token_id=0)
        if tiny
        else GPT2Config()
    )
    return GPT2LMHeadModel(config)


def qwen3_moe(tiny: bool) -> nn.Module:
    """Qwen3-MoE, hidden 256, 4 layers, 8 experts (top-2), moe_intermediate 128, vocab 8192, untied."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    size = (
        dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_experts=4,
            moe_intermediate_size=32,
            vocab_size=512,
            intermediate_size=128,
            head_dim=16,
        )
        if tiny
        else dict(
            hidden_size=256,
            num_hidden_layers=4,
            num_experts=8,
            moe_intermediate_size=128,
            vocab_size=8192,
            intermediate_size=688,
            head_dim=64,
        )
    )
    return Qwen3MoeForCausalLM(
        Qwen3MoeConfig(
            **size,
            num_experts_per_tok=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            max_position_embeddings=512,
        )
    )


@dataclass(frozen=True)
class ModelSpec:
    name: str
    full: Callable[[], nn.Module]
    tiny: Callable[[], nn.Module]
    moe_experts: str = "adamw"  # how the optimizer benchmarks route 3-D expert stacks
    repeats: int = 10  # timed optimizer steps (bench_step)

    def build(self, tiny: bool = False) -> nn.Module:
        seed_everything(MODEL_SEED)
        return (self.tiny if tiny else self.full)()


def _tiny_llama() -> nn.Module:
    return llama(64, 2, 172, 512, max_position_embeddings=512)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # hidden 256, 4 layers, intermediate 688, vocab 8192, 4 heads, untied (≈7.4M params)
        ModelSpec("llama-7.4M", lambda: llama(256, 4, 688, 8192, max_position_embeddings=512), _tiny_llama),
        ModelSpec("gpt2-small", lambda: gpt2(False), lambda: gpt2(True), repeats=5),
        ModelSpec("qwen3-moe-tiny", lambda: qwen3_moe(False), lambda: qwen3_moe(True), moe_experts="muon"),
        # hidden 512, 8 layers, intermediate 1376, 8 heads (≈60M params, 75% of them on Muon)
        ModelSpec("llama-60M-deep", lambda: llama(512, 8, 1376, 8192, heads=8), _tiny_llama),
    )
}
STEP_MODELS = ("llama-7.4M", "gpt2-small", "qwen3-moe-tiny")
DISTRIBUTED_MODELS = ("llama-7.4M", "llama-60M-deep")


# --------------------------------------------------------------------------- the scaling family
@dataclass(frozen=True)
class LlamaSize:
    hidden: int
    layers: int
    head_dim: int
    vocab: int
    repeats: int  # timed steps

    @property
    def intermediate(self) -> int:
        """8/3·hidden rounded up to a multiple of 8 (= 8·⌈hidden/3⌉): 344, 688, 1024, 1368, 2048."""
        return -(-self.hidden // 3) * 8

    @property
    def name(self) -> str:
        return f"h{self.hidden}-L{self.layers}"

    def build(self) -> nn.Module:
        seed_everything(MODEL_SEED)
        return llama(
            self.hidden,
            self.layers,
            self.intermediate,
            self.vocab,
            heads=self.hidden // self.head_dim,
            max_position_embeddings=512,
        )


SCALING_SIZES = (
    LlamaSize(128, 2, 64, 8192, 10),
    LlamaSize(256, 4, 64, 8192, 10),
    LlamaSize(384, 6, 64, 8192, 10),
    LlamaSize(512, 8, 64, 8192, 10),
    LlamaSize(768, 12, 64, 8192, 5),
)
SCALING_TINY = (
    LlamaSize(32, 1, 16, 512, 2),
    LlamaSize(48, 2, 16, 512, 2),
    LlamaSize(64, 2, 16, 512, 2),
    LlamaSize(96, 3, 16, 512, 2),
)


# --------------------------------------------------------------------------- Llamas trained on text
def convergence_llama(
    hidden: int, layers: int, intermediate: int, heads: int, block: int, vocab: int, seed: int = MODEL_SEED
) -> nn.Module:
    """The convergence benchmark's Llama (MHA, untied, ids 0 for bos/eos, ``block`` positions), initialised from
    ``seed`` (bench_variants' seeds; the default is every other benchmark's weights).

    Where ``intermediate`` is the lab's SwiGLU width (:func:`hf_muon.lab.models.llama_intermediate`), the lab's
    builder makes exactly this model and builds it; otherwise (the tiny size's 86) it is built here.
    """
    from hf_muon.lab.models import build_llama, llama_intermediate

    seed_everything(seed)
    if intermediate == llama_intermediate(hidden) and hidden % heads == 0:
        return build_llama(
            hidden, layers, vocab, block, head_dim=hidden // heads, tie_word_embeddings=False, seed=seed
        ).float()
    return llama(
        hidden,
        layers,
        intermediate,
        vocab,
        heads=heads,
        max_position_embeddings=block,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
    )


def trainer_llama(vocab: int, tiny: bool) -> nn.Module:
    """The Trainer benchmark's Llama: ``llama-7.4M``'s body (tiny: hidden 32, 2 layers) on the tokenizer's vocab."""
    seed_everything(MODEL_SEED)
    return llama(32, 2, 86, vocab) if tiny else llama(256, 4, 688, vocab)


# --------------------------------------------------------------------------- shapes only
# name: (hidden, layers, intermediate, query heads per key/value head)
BALANCE_SHAPES = {
    "llama-7.4M (h256, 4L)": (256, 4, 688, 1),
    "llama-135M-like (h576, 30L, GQA 3)": (576, 30, 1536, 3),
    "llama-1B-like (h2048, 16L, GQA 4)": (2048, 16, 5632, 4),
}


def llama_matrix_shapes(hidden: int, layers: int, intermediate: int, kv_ratio: int) -> list[tuple[int, int]]:
    """The Muon matrices of a Llama, layer by layer: q, k, v, o, gate, up, down."""
    kv = hidden // kv_ratio
    per_layer = [
        (hidden, hidden),
        (kv, hidden),
        (kv, hidden),
        (hidden, hidden),
        (intermediate, hidden),
        (intermediate, hidden),
        (hidden, intermediate),
    ]
    return [s for _ in range(layers) for s in per_layer]
