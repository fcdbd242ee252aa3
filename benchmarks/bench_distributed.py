"""Distributed Muon: bytes communicated per optimizer step vs DDP-AdamW, and per-rank NS load balance.

Measured on CPU with gloo (``torchrun`` workers started by this script), so the numbers are bytes, not
seconds (step times on CPU with gloo say nothing about GPUs; ``--device cuda`` records them when a GPU
box is lent).

Bytes per rank per optimizer step (ring-algorithm volumes):
* DDP gradient all-reduce: counted in a DDP communication hook, ``2·(w−1)/w · bucket bytes``;
* hf_muon's result exchange: counted by the optimizer (``Muon.comm_stats``), ``(w−1) · send bytes`` of
  the all-gather (padding included).
The ratio ``(all-reduce + exchange) / all-reduce`` is compared with Moonlight's bound 1.25.

Load balance: ``max/mean`` of per-rank Newton-Schulz FLOPs for FLOP-balanced (LPT) owners and for
naive round-robin, at 2/4/8 ranks, for Llama-shaped models (analytic, from the shapes).

    python benchmarks/bench_distributed.py [--tiny] [--worlds 2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MODELS = {
    # name: (hidden, layers, intermediate, vocab, kv heads ratio)
    "llama-7.4M": (256, 4, 688, 8192, 1),
    "llama-60M-deep": (512, 8, 1376, 8192, 1),
}
TINY = {"llama-tiny": (64, 2, 172, 512, 1)}


def _build(spec):
    from transformers import LlamaConfig, LlamaForCausalLM

    h, layers, inter, vocab, kvr = spec
    heads = max(4, h // 64)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=inter,
                                        num_hidden_layers=layers, num_attention_heads=heads,
                                        num_key_value_heads=heads // kvr, tie_word_embeddings=False))


def worker(args):
    """One torchrun rank: DDP model, a few steps with AdamW or hf_muon, bytes counted."""
    import torch
    import torch.distributed as dist

    import hf_muon

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    torch.manual_seed(0)
    model = _build(json.loads(args.spec))
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
        opt = hf_muon.Muon(hf_muon.param_groups(model), lr=1e-3, ns_dtype=args.ns_dtype)
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
           "muon_params": sum(p.numel() for r in hf_muon.route(model) if r.kind == "muon" for p in [r.param]),
           "params": sum(p.numel() for p in model.parameters())}
    if rank == 0:
        Path(args.result).write_text(json.dumps(out))
    dist.barrier()
    dist.destroy_process_group()


def _launch(spec, optimizer, world, steps, ns_dtype, port):
    with tempfile.TemporaryDirectory() as d:
        res = Path(d) / "r.json"
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(world), "--master_port",
               str(port), __file__, "--worker", "--spec", json.dumps(spec), "--optimizer", optimizer, "--steps",
               str(steps), "--result", str(res), "--ns-dtype", ns_dtype]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun failed ({optimizer}, world {world}):\n{proc.stderr[-3000:]}")
        return json.loads(res.read_text())


def balance_table():
    from hf_muon.optim.backends import assign_owners, imbalance, ns_cost, round_robin

    shapes = {
        "llama-7.4M (h256, 4L)": (256, 4, 688, 1),
        "llama-135M-like (h576, 30L, GQA 3)": (576, 30, 1536, 3),
        "llama-1B-like (h2048, 16L, GQA 4)": (2048, 16, 5632, 4),
    }
    rows, data = [], {}
    for name, (h, layers, inter, kvr) in shapes.items():
        kv = h // kvr
        mats = [s for _ in range(layers) for s in [(h, h), (kv, h), (kv, h), (h, h), (inter, h), (inter, h), (h, inter)]]
        costs = [ns_cost(s, 5) for s in mats]
        for w in (2, 4, 8):
            lpt = imbalance(costs, assign_owners(costs, w), w)
            rr = imbalance(costs, round_robin(costs, w), w)
            data[f"{name}@{w}"] = {"lpt": lpt, "round_robin": rr}
            rows.append([name, w, f"{lpt:.3f}", f"{rr:.3f}", "MET" if lpt <= 1.15 else "NOT MET"])
    return rows, data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--optimizer", default="muon", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--ns-dtype", default="float32", help="NS (and result-exchange) dtype: float32 or bfloat16")
    ap.add_argument("--worlds", default="2,4")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--allow-busy", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--port", type=int, default=29900)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    load = common.check_load(args.allow_busy)
    models = TINY if args.tiny else MODELS
    worlds = [int(w) for w in args.worlds.split(",")]
    port = args.port
    comm_rows, comm = [], {}
    for name, spec in models.items():
        for w in worlds:
            for dtype in ([args.ns_dtype] if args.tiny else ["float32", "bfloat16"]):
                a = _launch(spec, "adamw", w, args.steps, dtype, port)
                m = _launch(spec, "muon", w, args.steps, dtype, port + 1)
                port += 2
                total = m["allreduce_bytes_per_step"] + m["exchange_bytes_per_step"]
                ratio = total / a["allreduce_bytes_per_step"]
                key = f"{name}@{w}/{dtype}"
                comm[key] = {"adamw": a, "muon": m, "ratio": ratio}
                frac = m["muon_params"] / m["params"]
                comm_rows.append([name, w, dtype, f"{frac:.0%}", f"{a['allreduce_bytes_per_step'] / 2**20:.2f}",
                                  f"{m['exchange_bytes_per_step'] / 2**20:.2f}", f"{ratio:.3f}",
                                  "MET" if ratio <= 1.25 else "NOT MET"])
                print(f"{key}: AdamW {a['allreduce_bytes_per_step'] / 2**20:.2f} MiB/step, Muon +"
                      f"{m['exchange_bytes_per_step'] / 2**20:.2f} MiB -> {ratio:.3f}x", flush=True)
    bal_rows, balance = balance_table()
    comm_md = common.markdown_table(
        ["model", "ranks", "result dtype", "Muon share of params", "DDP all-reduce MiB/step/rank",
         "Muon exchange MiB/step/rank", "total / DDP-AdamW", "≤ 1.25×"], comm_rows, "lrlrrrrl")
    bal_md = common.markdown_table(["model", "ranks", "max/mean (FLOP-balanced)", "max/mean (round-robin)",
                                    "≤ 1.15"], bal_rows, "lrrrl")
    print("\n" + comm_md + "\n\n" + bal_md)
    out = {"machine": common.machine_info(args.device), "versions": common.package_versions(), "load": load,
           "seeds": {"torch": 0}, "steps": args.steps, "comm": comm, "balance": balance}
    if not args.tiny:
        common.write_json(common.RESULTS_DIR / "distributed.json", out)
        common.update_markdown_section(common.RESULTS_MD, "distributed", "\n".join([
            "## Distributed Muon (CPU, gloo, DDP)",
            "",
            f"`python benchmarks/bench_distributed.py` — {args.steps} steps, bytes per rank per optimizer step "
            "(ring volumes). The Muon exchange sends each orthogonalized matrix from its owner to all ranks in "
            "the NS result dtype (bf16 by default on CUDA, fp32 on CPU).",
            "",
            comm_md,
            "",
            "Per-rank Newton-Schulz FLOPs, max/mean (1.0 = perfect balance):",
            "",
            bal_md,
        ]))
    return out


if __name__ == "__main__":
    main()
    if "--worker" in sys.argv:  # gloo threads can keep a finished rank alive; results are written
        sys.stdout.flush()
        os._exit(0)
