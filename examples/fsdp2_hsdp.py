"""Muon under FSDP2 or HSDP (``fully_shard``), with sharded checkpoints that resume on any layout.

    torchrun --nproc_per_node 8 examples/fsdp2_hsdp.py --mode fsdp2 --ckpt ckpt --steps 100      # GPUs (nccl)
    torchrun --nproc_per_node 8 examples/fsdp2_hsdp.py --mode hsdp --replicas 2 --ckpt ckpt        # 2 × 4 HSDP
    torchrun --nproc_per_node 2 examples/fsdp2_hsdp.py --mode fsdp2 --ckpt /tmp/ck --steps 4       # CPU (gloo)
    torchrun --nproc_per_node 2 examples/fsdp2_hsdp.py --mode fsdp2 --ckpt /tmp/ck --steps 8 --resume

Nothing about the optimizer changes with the layout: ``hf_muon.create_optimizer`` reads it off the parameters
(``Shard(0)`` DTensors for FSDP2, ``(Replicate(), Shard(0))`` for HSDP). Each matrix is gathered on one owner rank
of its shard group, orthogonalized once and its rows sent back. Checkpoints go through torch.distributed.checkpoint
(DCP); a checkpoint counts only once rank 0 has written its COMPLETE marker, so a run killed while saving resumes
from the previous one, and a checkpoint written by one layout or world size loads into any other.
"""

import argparse
import json
import os

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import LlamaConfig, LlamaForCausalLM

import hf_muon

VOCAB, SEQ, GLOBAL_BATCH = 256, 32, 8


def batch(step: int, rank: int, world: int) -> torch.Tensor:
    """This rank's slice of the step's global batch (synthetic counting sequences)."""
    g = torch.Generator().manual_seed(step)
    ids = (torch.randint(0, VOCAB, (GLOBAL_BATCH, 1), generator=g) + torch.arange(SEQ)) % VOCAB
    per = GLOBAL_BATCH // world
    return ids[rank * per : (rank + 1) * per]


def build(mode: str, replicas: int, device: str):
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
    model.to(device)
    if mode in ("fsdp2", "hsdp"):
        world = dist.get_world_size()
        if mode == "fsdp2":
            mesh = init_device_mesh(device, (world,), mesh_dim_names=("shard",))
        else:
            mesh = init_device_mesh(device, (replicas, world // replicas), mesh_dim_names=("replicate", "shard"))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model, hf_muon.create_optimizer(model, lr=3e-3, weight_decay=0.1)


def latest_complete(root: str) -> int:
    done = (
        [
            int(d.split("-")[1])
            for d in os.listdir(root)
            if d.startswith("step-") and os.path.exists(os.path.join(root, d, "COMPLETE"))
        ]
        if os.path.isdir(root)
        else []
    )
    return max(done, default=0)


def save(model, opt, root: str, step: int) -> None:
    path = os.path.join(root, f"step-{step:06d}")
    model_sd, optim_sd = get_state_dict(model, opt)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)
    dist.barrier()
    if dist.get_rank() == 0:  # the marker last: a checkpoint without it is ignored on resume
        with open(os.path.join(path, "COMPLETE"), "w") as f:
            json.dump({"step": step, "world": dist.get_world_size()}, f)
    dist.barrier()


def load(model, opt, root: str, step: int) -> None:
    model_sd, optim_sd = get_state_dict(model, opt)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=os.path.join(root, f"step-{step:06d}"))
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("ddp", "fsdp2", "hsdp"), default="fsdp2")
    ap.add_argument("--replicas", type=int, default=2, help="hsdp: replica groups (world size / shard size)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--ckpt", default="checkpoints")
    ap.add_argument("--save-every", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="start from the newest complete checkpoint under --ckpt")
    a = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{int(os.environ['LOCAL_RANK'])}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    model, opt = build(a.mode, a.replicas, "cuda" if cuda else "cpu")
    if a.mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    first = latest_complete(a.ckpt) if a.resume else 0
    if first:
        load(model, opt, a.ckpt, first)
    for step in range(first, a.steps):
        ids = batch(step, rank, world).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if rank == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
        if (step + 1) % a.save_every == 0:
            save(model, opt, a.ckpt, step + 1)
    if rank == 0:
        print(f"done: {a.mode} on {world} ranks, steps {first}..{a.steps}", flush=True)
    del model, opt  # free DDP's reducer first: it must not hold the last reference to a gloo group
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
