"""Train a tiny Llama for K steps with hf_muon under DDP or raw FSDP2 (gloo, CPU); used by the tests.

    torchrun --nproc_per_node W tests/scripts/dist_train.py --mode ddp|fsdp2|single --out DIR --steps K
        [--save-at N --ckpt DIR] [--resume DIR] [--model llama|phi3-split]

``phi3-split`` is a tiny Phi-3 (fused qkv_proj and gate_up_proj) with ``split_fused=True``.

Every world size sees the same global batch per step (rank r takes its slice), so DDP-averaged
gradients equal the single-process full-batch gradients up to summation order. Rank 0 writes the
final full weights to OUT/weights.pt and the comm/assignment stats to OUT/stats.json.
"""

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

import hf_muon

GLOBAL_BATCH, SEQ, VOCAB = 8, 16, 128


def batch(step, rank, world):
    g = torch.Generator().manual_seed(1000 + step)
    ids = (torch.randint(0, VOCAB, (GLOBAL_BATCH, 1), generator=g) + torch.arange(SEQ)) % VOCAB
    per = GLOBAL_BATCH // world
    return ids[rank * per: (rank + 1) * per]


def build_model(kind="llama"):
    torch.manual_seed(0)
    if kind == "phi3-split":
        from transformers import Phi3Config, Phi3ForCausalLM

        return Phi3ForCausalLM(Phi3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=0,
                                          bos_token_id=0, eos_token_id=1))
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                      bos_token_id=0, eos_token_id=1)
    return LlamaForCausalLM(cfg)


def full_state(model, mode):
    if mode == "fsdp2":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    m = model.module if hasattr(model, "module") else model
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def save_ckpt(model, opt, mode, path):
    if mode == "fsdp2":
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        msd, osd = get_state_dict(model, opt)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=path)
    elif dist.get_rank() == 0 if dist.is_initialized() else True:
        os.makedirs(path, exist_ok=True)
        m = model.module if hasattr(model, "module") else model
        torch.save({"model": m.state_dict(), "optim": opt.state_dict()}, os.path.join(path, "ckpt.pt"))
    if dist.is_initialized():
        dist.barrier()


def load_ckpt(model, opt, mode, path):
    if mode == "fsdp2":
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        msd, osd = get_state_dict(model, opt)
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=path)
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        ck = torch.load(os.path.join(path, "ckpt.pt"), weights_only=True)
        m = model.module if hasattr(model, "module") else model
        m.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["single", "ddp", "fsdp2"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--save-at", type=int, default=None)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--first-step", type=int, default=0)
    ap.add_argument("--model", choices=["llama", "phi3-split"], default="llama")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                    help="model dtype; NS always runs in fp32. fp64 weights/grads keep the DDP summation-order "
                         "noise (~1e-7 relative in fp32 grads) out of the comparison")
    a = ap.parse_args()
    torch.set_num_threads(1)
    import faulthandler

    faulthandler.dump_traceback_later(150, exit=True, file=sys.stderr)  # a hung collective shows its stack
    torch.set_default_dtype(getattr(torch, a.dtype))
    world, rank = 1, 0
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
    model = build_model(a.model)
    if a.mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    elif a.mode == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    inner = model.module if hasattr(model, "module") else model
    groups = hf_muon.param_groups(inner, moe_experts="adamw", split_fused=a.model == "phi3-split")
    opt = hf_muon.Muon(groups, lr=2e-2, weight_decay=0.1, ns_dtype="float32")
    if a.resume:
        load_ckpt(model, opt, a.mode, a.resume)
    for step in range(a.first_step, a.steps):
        ids = batch(step, rank, world)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if a.save_at is not None and step + 1 == a.save_at:
            save_ckpt(model, opt, a.mode, a.ckpt)
    sd = full_state(model, a.mode)
    if rank == 0:
        os.makedirs(a.out, exist_ok=True)
        torch.save(sd, os.path.join(a.out, "weights.pt"))
        json.dump({"world": world, "bytes_sent": opt.comm_stats.bytes_sent, "calls": opt.comm_stats.calls},
                  open(os.path.join(a.out, "stats.json"), "w"))
    if dist.is_initialized():
        dist.barrier()
    # gloo objects can hang in their destructors on a loaded 2-core box with 4 ranks (CI saw one rank stuck
    # for 150 s while main()'s locals were freed, after destroy_process_group). Everything is written and
    # every rank passed the barrier, so leave here, before any gloo object is torn down.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
