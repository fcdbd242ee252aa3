"""Train a tiny model for K steps with hf_muon under a distributed layout (gloo, CPU); used by the tests.

    torchrun --nproc_per_node W tests/scripts/dist_train.py --mode MODE --out DIR --steps K
        [--model llama|phi3-split|qwen3-moe] [--ckpt ROOT --save-every N] [--resume] [--roundtrip S]
        [--kill-rank R --kill-step S --kill-in step|save]
    python tests/scripts/dist_train.py --mode single ...          # the one-process reference

Modes (W ranks): ``ddp``; ``fsdp2`` (raw ``fully_shard``, 1-D mesh); ``hsdp`` (``fully_shard`` on a 2-D
(replicate, shard) mesh, W/2 × 2); ``tp`` (transformers' own TP plan, ``from_pretrained(distributed_config=
DistributedConfig(tp_size=W))``: Shard(0) column- and Shard(1) row-parallel DTensors); ``fsdp_tp`` (transformers,
fsdp W/2 × tp 2: strided shards); ``moe`` (Qwen3-MoE with ``moe_experts="muon"``: the experts on a 2-D (1, W)
mesh, ``gate_up_proj`` sharded by expert and ``down_proj`` on an inner dim, everything else on its 1-D sub-mesh:
two meshes in one optimizer). Every layout sees the same global batch per step (each data-parallel rank takes
its slice; TP ranks share theirs), so the updates equal one process's up to summation order.

Checkpoints are DCP (every layout, so any layout resumes any other) in ROOT/step-NNNNNN, complete only once
rank 0 has written the COMPLETE marker after every rank's data: ``--resume`` starts from the newest complete one
and ignores partial ones. ``--roundtrip S`` also reloads step S into a fresh model and optimizer and trains on to
K (OUT/weights_roundtrip.pt). Faults: rank R SIGKILLs itself inside the optimizer step S (``step``: between
the momentum update and the write) or while writing the checkpoint of step S (``save``: after its DCP data,
before the metadata and the marker). Rank 0 writes OUT/weights.pt (full weights) and OUT/stats.json.
"""

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import tiny_qwen3_moe  # noqa: E402

import hf_muon  # noqa: E402

GLOBAL_BATCH, SEQ, VOCAB = 8, 16, 128
MODES = ("single", "ddp", "fsdp2", "hsdp", "tp", "fsdp_tp", "moe")


def batch(step, rank, world):
    g = torch.Generator().manual_seed(1000 + step)
    ids = (torch.randint(0, VOCAB, (GLOBAL_BATCH, 1), generator=g) + torch.arange(SEQ)) % VOCAB
    per = GLOBAL_BATCH // world
    return ids[rank * per : (rank + 1) * per]


def build_model(kind="llama"):
    torch.manual_seed(0)
    if kind == "phi3-split":
        from transformers import Phi3Config, Phi3ForCausalLM

        return Phi3ForCausalLM(
            Phi3Config(
                vocab_size=VOCAB,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                pad_token_id=0,
                bos_token_id=0,
                eos_token_id=1,
            )
        )
    if kind == "qwen3-moe":
        return tiny_qwen3_moe(vocab_size=VOCAB, experts_implementation="eager")  # grouped_mm has no fp64
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=80,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            bos_token_id=0,
            eos_token_id=1,
        )
    )


def data_parallel(mode, rank, world):
    """(index, count) of this rank's slice of the global batch."""
    if mode in ("single", "tp"):
        return 0, 1
    if mode == "fsdp_tp":
        return rank // 2, world // 2
    return rank, world


def _transformers_layout(a, world):
    """The model through transformers' own distributed loading (TP / FSDP2 + TP plans)."""
    from transformers import AutoModelForCausalLM
    from transformers.distributed import DistributedConfig

    init = os.path.join(a.out, "init")
    if dist.get_rank() == 0:
        build_model(a.model).save_pretrained(init)
    dist.barrier()
    cfg = DistributedConfig(tp_size=world) if a.mode == "tp" else DistributedConfig(fsdp_size=world // 2, tp_size=2)
    return AutoModelForCausalLM.from_pretrained(init, distributed_config=cfg, dtype=torch.get_default_dtype())


def setup(a, world):
    """The model in its layout and its optimizer."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard

    if a.mode in ("tp", "fsdp_tp"):
        model = _transformers_layout(a, world)
    else:
        model = build_model(a.model)
    if a.mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    elif a.mode in ("fsdp2", "hsdp"):
        shape, names = ((world,), ("shard",)) if a.mode == "fsdp2" else ((world // 2, 2), ("replicate", "shard"))
        mesh = init_device_mesh("cpu", shape, mesh_dim_names=names)
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    elif a.mode == "moe":
        full = init_device_mesh("cpu", (1, world), mesh_dim_names=("replicate", "shard"))
        inner = {"down_proj"}  # sharded on its rows; gate_up_proj by expert (FSDP2's default Shard(0))
        for layer in model.model.layers:
            experts = layer.mlp.experts
            names = {id(p): n for n, p in experts.named_parameters()}
            fully_shard(
                experts,
                mesh=full,
                shard_placement_fn=lambda p, names=names: Shard(1) if names[id(p)] in inner else Shard(0),
            )
            fully_shard(layer, mesh=full["shard"])
        fully_shard(model, mesh=full["shard"])
    inner_model = model.module if hasattr(model, "module") else model
    config = hf_muon.MuonConfig(
        lr=2e-2,
        weight_decay=0.1,
        ns_dtype="float32",
        split_fused=a.model == "phi3-split",
        moe_experts="muon" if a.model == "qwen3-moe" else "adamw",
    )
    return model, hf_muon.create_optimizer(inner_model, config)


# ------------------------------------------------------------------ checkpoints
def step_dir(root, step):
    return os.path.join(root, f"step-{step:06d}")


def latest_complete(root):
    """The newest checkpoint with its COMPLETE marker (partial ones, killed mid-write, are ignored)."""
    steps = []
    for name in os.listdir(root) if os.path.isdir(root) else []:
        if name.startswith("step-") and os.path.exists(os.path.join(root, name, "COMPLETE")):
            steps.append(int(name.split("-")[1]))
    return max(steps) if steps else None


def _writer(path, kill):
    from torch.distributed.checkpoint import FileSystemWriter

    class KillAfterData(FileSystemWriter):
        def write_data(self, plan, planner):
            fut = super().write_data(plan, planner)
            fut.wait()
            if kill:
                os.kill(os.getpid(), signal.SIGKILL)
            return fut

    return KillAfterData(path)


def save_ckpt(model, opt, path, step, kill=False):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    multi = dist.is_initialized()
    if not multi or dist.get_rank() == 0:
        shutil.rmtree(path, ignore_errors=True)  # a partial write of an earlier, killed run
    if multi:
        dist.barrier()
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, storage_writer=_writer(path, kill))
    if multi:
        dist.barrier()
    if not multi or dist.get_rank() == 0:
        with open(os.path.join(path, "COMPLETE.tmp"), "w") as f:
            json.dump({"step": step, "world": dist.get_world_size() if multi else 1}, f)
        os.replace(os.path.join(path, "COMPLETE.tmp"), os.path.join(path, "COMPLETE"))
    if multi:
        dist.barrier()


def load_ckpt(model, opt, path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    msd, osd = get_state_dict(model, opt)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])


def full_state(model, mode):
    if mode == "single" or mode == "ddp":
        m = model.module if hasattr(model, "module") else model
        return {k: v.detach().clone() for k, v in m.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


# ------------------------------------------------------------------ training
def kill_inside_step(opt, at_step):
    """SIGKILL this rank inside optimizer step ``at_step`` (1-based), after the momentum update."""
    inner = opt.orthogonalize

    def orthogonalize(jobs):
        if opt.param_groups[0]["step"] == at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return inner(jobs)

    opt.orthogonalize = orthogonalize


def train(a, model, opt, first, rank, dp):
    for step in range(first, a.steps):
        ids = batch(step, *dp)
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        if a.ckpt and a.save_every and (step + 1) % a.save_every == 0:
            kill = a.kill_in == "save" and rank == a.kill_rank and step + 1 == a.kill_step
            save_ckpt(model, opt, step_dir(a.ckpt, step + 1), step + 1, kill)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--model", choices=["llama", "phi3-split", "qwen3-moe"], default="llama")
    ap.add_argument("--ckpt", default=None, help="checkpoint root")
    ap.add_argument("--save-every", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="start from the newest complete checkpoint under --ckpt")
    ap.add_argument("--roundtrip", type=int, default=None, help="also reload this step's checkpoint and train on")
    ap.add_argument("--kill-rank", type=int, default=None)
    ap.add_argument("--kill-step", type=int, default=None)
    ap.add_argument("--kill-in", choices=["step", "save"], default="step")
    ap.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="model dtype; NS always runs in fp32. fp64 weights/grads keep the DDP summation-order "
        "noise (~1e-7 relative in fp32 grads) out of the comparison",
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    import faulthandler

    faulthandler.dump_traceback_later(150, exit=True, file=sys.stderr)  # a hung collective shows its stack
    torch.set_default_dtype(getattr(torch, a.dtype))
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    world, rank = 1, 0
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
    os.makedirs(a.out, exist_ok=True)
    dp = data_parallel(a.mode, rank, world)
    model, opt = setup(a, world)
    first = 0
    if a.resume:
        first = latest_complete(a.ckpt) or 0
        if first:
            load_ckpt(model, opt, step_dir(a.ckpt, first))
    if a.kill_rank == rank and a.kill_in == "step":
        kill_inside_step(opt, a.kill_step)
    train(a, model, opt, first, rank, dp)
    outputs = {"weights.pt": full_state(model, a.mode)}
    if a.roundtrip is not None:
        model, opt = setup(a, world)
        load_ckpt(model, opt, step_dir(a.ckpt, a.roundtrip))
        train(argparse.Namespace(**dict(vars(a), ckpt=None)), model, opt, a.roundtrip, rank, dp)
        outputs["weights_roundtrip.pt"] = full_state(model, a.mode)
    flops = [None] * world
    if dist.is_initialized():
        dist.all_gather_object(flops, opt.comm_stats.ns_flops)
    else:
        flops = [opt.comm_stats.ns_flops]
    if rank == 0:
        for name, sd in outputs.items():
            torch.save(sd, os.path.join(a.out, name))
        stats = dict(
            world=world,
            first_step=first,
            bytes_sent=opt.comm_stats.bytes_sent,
            calls=opt.comm_stats.calls,
            steps=opt.comm_stats.steps,
            ns_flops=flops,
            ns_dtype=opt.backend.ns_dtype,
        )
        json.dump(stats, open(os.path.join(a.out, "stats.json"), "w"))
    if dist.is_initialized():
        dist.barrier()
    # DDP's reducer, freed with main()'s locals, can tear down the gloo group while holding the GIL that a gloo
    # worker still needs (CI saw a rank stuck 150 s; docs/distributed.md). Everything is written and every rank
    # passed the barrier, so leave here, before any gloo object is torn down.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
