"""hf_muon through accelerate's own FSDP2 code on CPU (gloo), against one process.

    torchrun --nproc_per_node 2 tests/scripts/accel_fsdp2.py --out result.json            # FSDP2, mesh (2,)
    torchrun --nproc_per_node 4 tests/scripts/accel_fsdp2.py --out result.json --hsdp     # HSDP (2, 2)

As the Trainer does, the optimizer is built on the unsharded model *before* ``Accelerator.prepare``, which
shards the model with ``fully_shard`` and swaps the optimizer's parameters for DTensors. accelerate turns FSDP
on only for GPU-type devices, so this script (a test, never the product) replaces that device gate
(:mod:`cpu_fsdp_gate`). Every rank takes its own quarter/half of one global batch; rank 0 also trains an unsharded copy
on the whole batch. Then the ``SHARDED_STATE_DICT`` checkpoint saved at step K is loaded back into the model and
optimizer (which had moved on to step N), they train to step N again, and the weights are compared with the
uninterrupted run's.
"""

import argparse
import json

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin
from cpu_fsdp_gate import open_gate
from transformers import LlamaConfig, LlamaForCausalLM

import hf_muon

CFG = dict(lr=1e-2, weight_decay=0.1, ns_dtype="float32")


def tiny_llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=96,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
    )


def global_batches(n, size):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 96, (size, 12), generator=g) for _ in range(n)]


def prepared(acc):
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, hf_muon.MuonConfig(**CFG))  # before prepare, as Trainer does
    before = [id(p) for g in opt.param_groups for p in g["params"]]
    model, opt = acc.prepare(model, opt)
    after = [p for g in opt.param_groups for p in g["params"]]
    swapped = all(type(p).__name__ == "DTensor" or hasattr(p, "device_mesh") for p in after)
    return model, opt, swapped and not (set(before) & {id(p) for p in after})


def train(acc, model, opt, batches, start, stop):
    rank, world = dist.get_rank(), dist.get_world_size()
    for x in batches[start:stop]:
        part = x.chunk(world)[rank]
        loss = model(input_ids=part, labels=part).loss
        acc.backward(loss)
        opt.step()
        opt.zero_grad()


def full_weights(model):
    out = {}
    for n, p in model.named_parameters():
        out[n] = (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
    return out


def reference(batches, stop):
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, hf_muon.MuonConfig(distributed="none", **CFG))
    for x in batches[:stop]:
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def rel(a, b):
    num = sum((a[n] - b[n]).norm() ** 2 for n in b) ** 0.5
    return float(num / sum(b[n].norm() ** 2 for n in b) ** 0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--resume_at", type=int, default=2)
    ap.add_argument("--hsdp", action="store_true")
    a = ap.parse_args()
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, state_dict_type="SHARDED_STATE_DICT", reshard_after_forward=True
    )
    kwargs = {}
    if a.hsdp:
        from accelerate.parallelism_config import ParallelismConfig

        kwargs["parallelism_config"] = ParallelismConfig(dp_replicate_size=2, dp_shard_size=2)
    open_gate()
    acc = Accelerator(cpu=True, fsdp_plugin=plugin, **kwargs)
    world = dist.get_world_size()
    batches = global_batches(a.steps, 4 * world)
    model, opt, swapped = prepared(acc)
    placements = sorted({str(p.placements) for p in model.parameters() if hasattr(p, "placements")})
    train(acc, model, opt, batches, 0, a.resume_at)
    acc.save_state(a.ckpt)
    train(acc, model, opt, batches, a.resume_at, a.steps)
    uninterrupted = full_weights(model)
    acc.load_state(a.ckpt)  # weights and optimizer state back to step K (the run above moved both on)
    train(acc, model, opt, batches, a.resume_at, a.steps)
    resumed = full_weights(model)
    if dist.get_rank() == 0:
        ref = reference(batches, a.steps)
        out = {
            "world": world,
            "distributed_type": str(acc.distributed_type),
            "is_fsdp2": acc.is_fsdp2,
            "placements": placements,
            "optimizer_params_swapped_to_dtensors": swapped,
            "optimizer": type(getattr(opt, "optimizer", opt)).__name__,
            "rel_vs_one_process": rel(uninterrupted, ref),
            "rel_resumed_vs_uninterrupted": rel(resumed, uninterrupted),
        }
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
        print(json.dumps(out, indent=1))
    dist.barrier()
    acc.end_training()  # gloo can abort at interpreter exit while a process group is alive (pytorch#190489)


if __name__ == "__main__":
    main()
