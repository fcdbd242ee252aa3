"""Muon in an accelerate training loop (DDP, mixed precision, gradient accumulation handled by accelerate).

    python examples/accelerate_loop.py --steps 20                                   # one process
    hf-muon config ddp --out ddp.yaml
    accelerate launch --config_file ddp.yaml examples/accelerate_loop.py            # GPUs
    ACCELERATE_USE_CPU=true accelerate launch --config_file ddp.yaml --num_processes 2 --mixed_precision no \\
        examples/accelerate_loop.py --steps 20                                      # CPU, gloo

`create_optimizer` returns one torch.optim.Optimizer; `accelerator.prepare` wraps it like any other. Under DDP
every matrix is orthogonalized once, by a FLOP-balanced owner rank, and the results are all-gathered.
"""

import argparse

import torch
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM

import hf_muon

VOCAB, SEQ = 256, 32


class Counting(torch.utils.data.Dataset):
    """Synthetic next-token data: each sequence counts up from a random start."""

    def __len__(self):
        return 4096

    def __getitem__(self, i):
        start = torch.randint(0, VOCAB, (1,), generator=torch.Generator().manual_seed(i))
        return (start + torch.arange(SEQ)) % VOCAB


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--accumulation", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    a = ap.parse_args(argv)
    accelerator = Accelerator(gradient_accumulation_steps=a.accumulation)
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
    opt = hf_muon.create_optimizer(model, lr=a.lr, weight_decay=0.1)
    loader = torch.utils.data.DataLoader(Counting(), batch_size=a.batch_size, shuffle=True)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    model.train()
    for step, ids in enumerate(loader):
        if step == a.steps * a.accumulation:
            break
        with accelerator.accumulate(model):
            loss = model(input_ids=ids, labels=ids).loss
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
        if accelerator.sync_gradients and (step // a.accumulation) % 5 == 0:
            accelerator.print(f"step {step // a.accumulation:4d}  loss {loss.item():.4f}")
    accelerator.print(f"done: {accelerator.num_processes} process(es), last loss {loss.item():.4f}")
    # Free the DDP wrapper before the group: a reducer left holding the last reference to a gloo group can deadlock.
    model, opt, loader = accelerator.free_memory(model, opt, loader)
    accelerator.end_training()  # frees the process group; CPU/gloo runs can abort at exit otherwise


if __name__ == "__main__":
    main()
