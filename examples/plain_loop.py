"""Muon in a plain PyTorch training loop: route, build, train, checkpoint, resume.

    python examples/plain_loop.py --steps 50 --out /tmp/plain

The model is a small Llama built from a config (nothing is downloaded); the data is a synthetic next-token task
(each sequence counts up from a random start), so the loss visibly falls within a few dozen steps. Swap in your
own model and batches: the three hf_muon lines are ``routing_report``, ``create_optimizer`` and nothing else.
"""

import argparse
import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import hf_muon

VOCAB, SEQ = 256, 32


def batch(step: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    return (torch.randint(0, VOCAB, (size, 1), generator=g) + torch.arange(SEQ)) % VOCAB


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default="plain_loop_out")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    print(hf_muon.routing_report(model))  # which tensors Muon updates, which AdamW, and why
    # hidden matrices on Muon, embeddings / head / norms on AdamW; AdamW-sized lr and decay carry over
    opt = hf_muon.create_optimizer(model, lr=a.lr, weight_decay=0.1)
    for step in range(a.steps):
        ids = batch(step, a.batch_size)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 10 == 0 or step == a.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "checkpoint.pt")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": a.steps}, path)
    # the optimizer state holds tensors and primitives only: it loads with weights_only=True
    state = torch.load(path, weights_only=True)
    opt.load_state_dict(state["optimizer"])
    print(f"saved and reloaded {path}")


if __name__ == "__main__":
    main()
