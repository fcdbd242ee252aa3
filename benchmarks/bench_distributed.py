"""Distributed Muon: bytes communicated per optimizer step vs DDP-AdamW, and per-rank NS load balance.

Measured on CPU with gloo (``torchrun`` workers started by this script), so the numbers are bytes, not
seconds (step times on CPU with gloo say nothing about GPUs).

Bytes per rank per optimizer step (ring-algorithm volumes), for :data:`benchmarks.models.DISTRIBUTED_MODELS`:
* DDP gradient all-reduce: counted in a DDP communication hook, ``2·(w−1)/w · bucket bytes``;
* hf_muon's result exchange: counted by the optimizer (``Muon.comm_stats``), ``(w−1) · send bytes`` of
  the all-gather (padding included).
The ratio ``(all-reduce + exchange) / all-reduce`` is compared with Moonlight's bound 1.25.

Load balance: ``max/mean`` of per-rank Newton-Schulz FLOPs (:func:`hf_muon.optim.backends.ns_cost`) for
FLOP-balanced (LPT) owners and for naive round-robin, at 2/4/8 ranks, for the Llama shapes of
:data:`benchmarks.models.BALANCE_SHAPES` (analytic, from the shapes).

    python benchmarks/bench_distributed.py [--tiny] [--worlds 2,4]
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


def worker(args) -> None:
    """One torchrun rank: DDP model, a few steps with AdamW or hf_muon, bytes counted."""
    import torch
    import torch.distributed as dist

    import hf_muon

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    model = MODELS[args.model].build(args.tiny)
    counted = {"allreduce": 0}

    def hook(state, bucket):
        t = bucket.buffer()
        counted["allreduce"] += int(2 * (world - 1) / world * t.numel() * t.element_size())
        fut = dist.all_reduce(t.div_(world), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])

    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp.register_comm_hook(None, hook)
    if args.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    else:
        opt = hf_muon.create_optimizer(model, hf_muon.MuonConfig(lr=1e-3, ns_dtype=args.ns_dtype))
    g = torch.Generator().manual_seed(rank)
    vocab = model.config.vocab_size
    for _ in range(args.steps):
        ids = torch.randint(0, vocab, (2, 32), generator=g)
        ddp(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    exchange = opt.comm_stats.bytes_sent if hasattr(opt, "comm_stats") else 0
    out = {"world": world, "rank": rank, "allreduce_bytes_per_step": counted["allreduce"] / args.steps,
           "exchange_bytes_per_step": exchange / args.steps,
           "muon_params": sum(r.param.numel() for r in hf_muon.route(model) if r.kind == "muon"),
           "params": sum(p.numel() for p in model.parameters())}
    if rank == 0:
        Path(args.result).write_text(json.dumps(out))
    dist.barrier()
    dist.destroy_process_group()


def _launch(model: str, tiny: bool, optimizer: str, world: int, steps: int, ns_dtype: str, port: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        res = Path(d) / "r.json"
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(world), "--master_port",
               str(port), __file__, "--worker", "--model", model, "--optimizer", optimizer, "--steps", str(steps),
               "--result", str(res), "--ns-dtype", ns_dtype] + (["--tiny"] if tiny else [])
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun failed ({optimizer}, world {world}):\n{proc.stderr[-3000:]}")
        return json.loads(res.read_text())


def balance() -> dict[str, dict]:
    from hf_muon.optim.backends import assign_owners, imbalance, ns_cost, round_robin

    out = {}
    for name, shape in BALANCE_SHAPES.items():
        costs = [ns_cost(s, NS_STEPS) for s in llama_matrix_shapes(*shape)]
        for w in BALANCE_WORLDS:
            out[f"{name}@{w}"] = {"lpt": imbalance(costs, assign_owners(costs, w), w),
                                  "round_robin": imbalance(costs, round_robin(costs, w), w)}
    return out


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(__doc__, REPORT.NAME, tiny_help="the tiny Llama, one result dtype (smoke test)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--optimizer", default="muon", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--ns-dtype", default="float32", help="NS (and result-exchange) dtype: float32 or bfloat16")
    ap.add_argument("--worlds", default="2,4")
    ap.add_argument("--port", type=int, default=29900)
    return ap.parse_args(argv)


def measure(args, load: dict, device) -> None:
    started = time.time()
    models = DISTRIBUTED_MODELS[:1] if args.tiny else DISTRIBUTED_MODELS
    port, comm = args.port, {}
    for name in models:
        label = f"{name} (tiny)" if args.tiny else name
        for w in (int(w) for w in args.worlds.split(",")):
            for dtype in [args.ns_dtype] if args.tiny else ["float32", "bfloat16"]:
                a = _launch(name, args.tiny, "adamw", w, args.steps, dtype, port)
                m = _launch(name, args.tiny, "muon", w, args.steps, dtype, port + 1)
                port += 2
                ratio = (m["allreduce_bytes_per_step"] + m["exchange_bytes_per_step"]) / a["allreduce_bytes_per_step"]
                comm[f"{label}@{w}/{dtype}"] = {"adamw": a, "muon": m, "ratio": ratio}
                print(f"{label}@{w}/{dtype}: AdamW {a['allreduce_bytes_per_step'] / REPORT.MIB:.2f} MiB/step, Muon +"
                      f"{m['exchange_bytes_per_step'] / REPORT.MIB:.2f} MiB -> {ratio:.3f}x", flush=True)
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
