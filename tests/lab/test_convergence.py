"""On real text from the local mirror, a tiny LM's loss falls faster with Muon than with AdamW at equal steps."""

import pytest
import torch
from conftest import data_dir

import hf_muon
from hf_muon.lab.data import lm_blocks, load_text, load_tokenizer


def _train(opt_name: str, lr: float, blocks: torch.Tensor, vocab: int, steps: int = 50, batch: int = 8) -> float:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=172,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         tie_word_embeddings=True, bos_token_id=0, eos_token_id=0))
    if opt_name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    else:
        opt = hf_muon.Muon(hf_muon.param_groups(model), lr=lr, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        ids = blocks[torch.randint(0, len(blocks), (batch,), generator=g)]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return sum(losses[-8:]) / 8


@pytest.fixture(scope="module")
def blocks():
    """GPT-2 tokens of TinyStories, re-indexed to the 2,047 most frequent ids plus one 'other' id so the
    output layer (and the test) stays small; the text and its token sequence are real."""
    tok = load_tokenizer(data_dir())
    ids = torch.tensor(lm_blocks(tok, load_text(data_dir(), "tinystories"), block_size=64,
                                 max_tokens=60_000)["input_ids"])
    counts = torch.bincount(ids.flatten(), minlength=len(tok))
    keep = counts.argsort(descending=True)[:2047]
    remap = torch.full((len(tok),), 2047, dtype=torch.long)
    remap[keep] = torch.arange(2047)
    return remap[ids], 2048


def test_muon_beats_adamw_at_equal_steps_each_at_its_best_lr(blocks):
    """Each optimizer at the better of two lrs. In a 1e-3..3e-2 sweep of this setup AdamW's best is 1e-2
    (5.25 after 50 steps) and Muon reaches 4.29 at 1e-2, 4.16 at 3e-2."""
    ids, vocab = blocks
    adamw = min(_train("adamw", lr, ids, vocab, steps=50) for lr in (3e-3, 1e-2))
    muon = min(_train("muon", lr, ids, vocab, steps=50) for lr in (3e-3, 1e-2))
    assert muon < adamw - 0.2, (muon, adamw)
