"""Distributed Muon: bytes per optimizer step vs the same layout with AdamW (DDP, FSDP2, HSDP, TP), and per-rank
NS load balance.

Measured on CPU with gloo (``torchrun`` workers started by this script), so the numbers are bytes, not seconds
(step times on CPU with gloo say nothing about GPUs). Each worker builds the model in its layout three times
(AdamW; hf_muon with fp32 and with bf16 Newton-Schulz), runs one warm-up step (the first step's one-time
agreement and replica checks), then counts every collective it issues for ``--steps`` steps: a dispatch mode
(:class:`RingBytes`) sees each c10d and functional collective (DDP's bucket all-reduce, FSDP2's all-gathers and
reduce-scatters, HSDP's replicate all-reduce, TP's activation all-reduces, hf_muon's all-to-alls / all-gathers)
and adds the ring volume this rank sends: all-reduce ``2(w−1)/w·n``, all-gather ``(w−1)·n`` of the input,
reduce-scatter ``(w−1)/w·n``, all-to-all what goes to other ranks. The ratio ``(layout + Muon optimizer
traffic) / (layout + AdamW optimizer traffic)`` is compared with Moonlight's bound 1.25.

Layouts: ``ddp`` (2, 4 ranks), ``fsdp2`` (raw ``fully_shard``, 1-D mesh; 2, 4), ``hsdp`` (``fully_shard`` on a
2 × 2 replicate × shard mesh; 4), ``tp`` (transformers' own TP plan through ``from_pretrained(distributed_config=
DistributedConfig(tp_size=w))``; 2, 4), for :data:`benchmarks.models.DISTRIBUTED_MODELS`. Each data-parallel
rank's batch is 2 × 32 tokens (TP ranks share theirs); TP runs again at 8 × 256: TP's own traffic is activations,
which grow with the tokens per step, while Muon's exchange grows with the parameters.

Load balance: ``max/mean`` of the Newton-Schulz FLOPs each rank ran in those runs (``Muon.comm_stats.ns_flops``),
and, analytically from the shapes, for FLOP-balanced (LPT) owners vs naive round-robin at 2/4/8 ranks for the
Llama shapes of :data:`benchmarks.models.BALANCE_SHAPES`.

    python benchmarks/bench_distributed.py [--tiny] [--layouts ddp@2,fsdp2@2,tp@2:8x256]
    python benchmarks/bench_distributed.py --from-json benchmarks/results/distributed.json   # report only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import cli
from benchmarks.models import BALANCE_SHAPES, DISTRIBUTED_MODELS, MODEL_SEED, MODELS, llama_matrix_shapes
from benchmarks.reports import distributed as REPORT

NS_STEPS = 5
BALANCE_WORLDS = (2, 4, 8)
BATCH = "2x32"  # per data-parallel rank (TP ranks share theirs): sequences x tokens
# layout@ranks[:batch]; TP also at a larger batch: its own traffic (activations) grows with the tokens
LAYOUTS = ("ddp@2", "ddp@4", "fsdp2@2", "fsdp2@4", "hsdp@4", "tp@2", "tp@4", "tp@2:8x256", "tp@4:8x256")
TINY_LAYOUTS = ("ddp@2", "fsdp2@2", "hsdp@4", "tp@2")


def ring_bytes(name: str, args: tuple) -> float:
    """Bytes this rank sends for one collective (ring volumes), from the op's name and arguments."""
    import torch
    import torch.distributed as dist

    def size_of_group():
        for a in args:
            if type(a).__name__ == "ScriptObject":
                try:
                    return dist.ProcessGroup.unbox(a)
                except RuntimeError:
                    continue
        if isinstance(args[-1], str):  # functional collectives name their group last
            return dist.distributed_c10d._resolve_process_group(args[-1])
        return None

    def nbytes(x):
        if isinstance(x, torch.Tensor):
            return x.numel() * x.element_size()
        return sum(nbytes(y) for y in x) if isinstance(x, (list, tuple)) else 0

    op = name.split(".")[-1]
    if op in ("wait_tensor", "_wrap_tensor_autograd", "barrier", "monitored_barrier_", "broadcast_"):
        return 0.0
    pg = size_of_group()
    w = pg.size() if pg is not None else 1
    if w == 1:
        return 0.0
    if op in ("allreduce_", "all_reduce", "all_reduce_", "all_reduce_coalesced", "allreduce_coalesced_"):
        return 2 * (w - 1) / w * nbytes(args[0])
    if op in ("allgather_", "allgather_coalesced_", "_allgather_base_", "allgather_into_tensor_coalesced_"):
        return (w - 1) * nbytes(args[1])
    if op in ("all_gather_into_tensor", "all_gather_into_tensor_coalesced"):
        return (w - 1) * nbytes(args[0])
    if op in ("_reduce_scatter_base_", "reduce_scatter_", "reduce_scatter_tensor_coalesced_"):
        return (w - 1) / w * nbytes(args[1])
    if op in ("reduce_scatter_tensor", "reduce_scatter_tensor_coalesced"):
        return (w - 1) / w * nbytes(args[0])
    if op == "alltoall_base_":
        inp, splits = args[1], args[4]
        if splits:
            row = inp.numel() // max(sum(splits), 1) * inp.element_size()
            return (sum(splits) - splits[pg.rank()]) * row
        return (w - 1) / w * nbytes(inp)
    if op == "all_to_all_single":
        return (w - 1) / w * nbytes(args[0])
    raise ValueError(f"RingBytes: no volume formula for collective {name}")


def _counter():
    from torch.utils._python_dispatch import TorchDispatchMode

    class RingBytes(TorchDispatchMode):
        """Sums :func:`ring_bytes` of every collective issued while active, under the current ``phase``."""

        def __init__(self):
            super().__init__()
            self.phase, self.bytes = "layout", {"layout": 0.0, "optimizer": 0.0}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func.overloadpacket)
            if "c10d" in name:
                self.bytes[self.phase] += ring_bytes(name, args)
            return func(*args, **(kwargs or {}))

    return RingBytes()


def _in_layout(args, layout: str, world: int, init_dir: str):
    """The benchmark model in ``layout`` (fresh weights from the same seed each time)."""
    import torch

    if layout == "tp":
        from transformers import AutoModelForCausalLM
        from transformers.distributed import DistributedConfig

        return AutoModelForCausalLM.from_pretrained(
            init_dir, distributed_config=DistributedConfig(tp_size=world), dtype=torch.float32
        )
    model = MODELS[args.model].build(args.tiny)
    if layout == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    shape, names = ((world,), ("shard",)) if layout == "fsdp2" else ((world // 2, 2), ("replicate", "shard"))
    mesh = init_device_mesh("cpu", shape, mesh_dim_names=names)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def worker(args) -> None:
    """One torchrun rank: the model in its layout under AdamW and hf_muon, the bytes of each counted."""
    import torch
    import torch.distributed as dist

    import hf_muon

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    layout = args.layout
    if layout == "tp" and rank == 0:
        MODELS[args.model].build(args.tiny).save_pretrained(args.init_dir)
    dist.barrier()
    records = {}
    for name in args.optimizers.split(","):
        model = _in_layout(args, layout, world, args.init_dir)
        inner = model.module if hasattr(model, "module") else model
        if name == "adamw":
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        else:
            opt = hf_muon.create_optimizer(inner, hf_muon.MuonConfig(lr=1e-3, ns_dtype=name.split("/")[1]))
        g = torch.Generator().manual_seed(0 if layout == "tp" else rank)  # TP ranks share their batch
        vocab = inner.config.vocab_size
        counter = _counter()
        rows, cols = map(int, args.batch.split("x"))
        for step in range(args.steps + 1):  # step 0: warm-up (one-time checks), not counted
            ids = torch.randint(0, vocab, (rows, cols), generator=g)
            with counter:
                if step == 1:
                    counter.bytes = {"layout": 0.0, "optimizer": 0.0}
                counter.phase = "layout"
                model(input_ids=ids, labels=ids).loss.backward()
                counter.phase = "optimizer"
                opt.step()
                opt.zero_grad()
        stats = getattr(opt, "comm_stats", None)
        flops = [None] * world
        dist.all_gather_object(flops, stats.ns_flops / max(stats.steps, 1) if stats else 0.0)
        records[name] = {
            "layout_bytes_per_step": counter.bytes["layout"] / args.steps,
            "optimizer_bytes_per_step": counter.bytes["optimizer"] / args.steps,
            "ns_flops_per_rank": flops,
            "muon_params": sum(r.param.numel() for r in hf_muon.route(inner) if r.kind == "muon"),
            "params": sum(p.numel() for p in inner.parameters()),
        }
        del model, opt
    if rank == 0:
        Path(args.result).write_text(json.dumps({"world": world, "layout": layout, "runs": records}))
    dist.barrier()


def _launch(args, model: str, layout: str, world: int, batch: str, optimizers: str, port: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        res = Path(d) / "r.json"
        cmd = [
            str(Path(sys.executable).parent / "torchrun"),
            "--nproc_per_node",
            str(world),
            "--master_port",
            str(port),
            __file__,
            "--worker",
            "--model",
            model,
            "--layout",
            layout,
            "--optimizers",
            optimizers,
            "--batch",
            batch,
            "--steps",
            str(args.steps),
            "--result",
            str(res),
            "--init-dir",
            str(Path(d) / "init"),
        ] + (["--tiny"] if args.tiny else [])
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun failed ({model} {layout}@{world}):\n{proc.stderr[-3000:]}")
        return json.loads(res.read_text())


def balance() -> dict[str, dict]:
    from hf_muon.optim.backends import assign_owners, imbalance, ns_cost, round_robin

    out = {}
    for name, shape in BALANCE_SHAPES.items():
        costs = [ns_cost(s, NS_STEPS) for s in llama_matrix_shapes(*shape)]
        for w in BALANCE_WORLDS:
            out[f"{name}@{w}"] = {
                "lpt": imbalance(costs, assign_owners(costs, w), w),
                "round_robin": imbalance(costs, round_robin(costs, w), w),
            }
    return out


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(
        __doc__, REPORT.NAME, tiny_help="the tiny Llama, fp32 NS, each layout at its fewest ranks (smoke test)"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--layout", help=argparse.SUPPRESS)
    ap.add_argument("--optimizers", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--init-dir", help=argparse.SUPPRESS)
    ap.add_argument("--batch", default=BATCH, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=3, help="counted optimizer steps (after one warm-up step)")
    ap.add_argument("--layouts", default=None, help=f"comma-separated layout@ranks (default {','.join(LAYOUTS)})")
    ap.add_argument("--port", type=int, default=29900)
    return ap.parse_args(argv)


def measure(args, load: dict, device) -> None:
    started = time.time()
    models = DISTRIBUTED_MODELS[:1] if args.tiny else DISTRIBUTED_MODELS
    layouts = args.layouts.split(",") if args.layouts else (TINY_LAYOUTS if args.tiny else LAYOUTS)
    optimizers = "adamw,muon/float32" if args.tiny else "adamw,muon/float32,muon/bfloat16"
    port, comm = args.port, []
    for name in models:
        label = f"{name} (tiny)" if args.tiny else name
        for spec in layouts:
            layout, rest = spec.split("@")
            world, _, batch = rest.partition(":")
            got = _launch(args, name, layout, int(world), batch or BATCH, optimizers, port)
            port += 1
            comm.append(
                {"model": label, "layout": layout, "world": int(world), "batch": batch or BATCH, "runs": got["runs"]}
            )
            for opt, r in got["runs"].items():
                print(
                    f"{label} {spec} {opt}: layout {r['layout_bytes_per_step'] / REPORT.MIB:.2f} MiB/step, "
                    f"optimizer {r['optimizer_bytes_per_step'] / REPORT.MIB:.2f} MiB/step",
                    flush=True,
                )
    data = cli.begin(args, "distributed", load, {"torch": MODEL_SEED})
    data.update(steps=args.steps, comm=comm, balance=balance())
    cli.finish(data, started, False)  # bytes, not times: other processes cannot change them
    cli.publish(args, data, REPORT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    return cli.run(args, REPORT, measure)


if __name__ == "__main__":
    code = main()
    if "--worker" in sys.argv:  # gloo threads can keep a finished rank alive; results are written
        sys.stdout.flush()
        os._exit(0)
    sys.exit(code)
