"""On real text from the local mirror, a tiny LM's loss falls faster with Muon than with AdamW at equal steps.

Data and loop are the lab's own (:func:`hf_muon.lab.research.data.text_blocks`,
:func:`hf_muon.lab.research.train.fit`), the ones the benchmarks and recipes use."""

import pytest
import torch
from conftest import data_dir

import hf_muon
from hf_muon.lab.models import build_llama
from hf_muon.lab.research.data import batch_order, text_blocks
from hf_muon.lab.research.train import fit


def _train(opt_name: str, lr: float, data, steps: int = 50, batch: int = 8) -> float:
    model = build_llama(64, 2, data.vocab_size, 64, head_dim=16, intermediate_size=172, seed=0)
    if opt_name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    else:
        opt = hf_muon.Muon(hf_muon.param_groups(model), lr=lr, weight_decay=0.1)
    order = batch_order(len(data.train), steps, batch, seed=1)
    hist = fit(model, opt, data.train, order, data.val, factor=lambda s: 1.0, desc=f"{opt_name} lr {lr:g}")
    return sum(hist.losses[-8:]) / 8


@pytest.fixture(scope="module")
def data():
    """GPT-2 tokens of TinyStories, re-indexed to the 2,047 most frequent training ids plus one 'other' id so the
    output layer (and the test) stays small; the text and its token sequence are real."""
    return text_blocks(data_dir(), block_size=64, vocab_size=2048, max_tokens=60_000, max_val_blocks=4)


def test_muon_beats_adamw_at_equal_steps_each_at_its_best_lr(data):
    """Each optimizer at the better of two lrs (mean training loss of the last 8 of 50 steps)."""
    adamw = min(_train("adamw", lr, data) for lr in (3e-3, 1e-2))
    muon = min(_train("muon", lr, data) for lr in (3e-3, 1e-2))
    print(f"adamw {adamw:.3f} muon {muon:.3f}")
    assert muon < adamw - 0.2, (muon, adamw)
