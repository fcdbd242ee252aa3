"""bench_distributed.py's report: bytes per optimizer step vs DDP-AdamW, and per-rank NS load balance."""

from __future__ import annotations

from .format import header, markdown_table, run_line

NAME = "distributed"
SECTION = "distributed"
TARGET_COMM = 1.25
TARGET_BALANCE = 1.15
MIB = 2**20


def comm_table(comm: dict[str, dict]) -> str:
    rows = []
    for key, c in comm.items():  # "<model>@<ranks>/<dtype>"
        name, rest = key.rsplit("@", 1)
        world, dtype = rest.split("/")
        a, m = c["adamw"], c["muon"]
        rows.append([name, world, dtype, f"{m['muon_params'] / m['params']:.0%}",
                     f"{a['allreduce_bytes_per_step'] / MIB:.2f}", f"{m['exchange_bytes_per_step'] / MIB:.2f}",
                     f"{c['ratio']:.3f}", "MET" if c["ratio"] <= TARGET_COMM else "NOT MET"])
    return markdown_table(["model", "ranks", "result dtype", "Muon share of params", "DDP all-reduce MiB/step/rank",
                           "Muon exchange MiB/step/rank", "total / DDP-AdamW", f"≤ {TARGET_COMM}×"], rows, "lrlrrrrl")


def balance_table(balance: dict[str, dict]) -> str:
    rows = []
    for key, b in balance.items():  # "<model>@<ranks>"
        name, world = key.rsplit("@", 1)
        rows.append([name, world, f"{b['lpt']:.3f}", f"{b['round_robin']:.3f}",
                     "MET" if b["lpt"] <= TARGET_BALANCE else "NOT MET"])
    return markdown_table(["model", "ranks", "max/mean (FLOP-balanced)", "max/mean (round-robin)",
                           f"≤ {TARGET_BALANCE}"], rows, "lrrrl")


def report(data: dict) -> str:
    run = run_line(data) + "." if "date" in data else None
    lines = header("## Distributed Muon (CPU, gloo, DDP)", data, run) + [
        f"`python benchmarks/bench_distributed.py` — {data['steps']} steps, bytes per rank per optimizer step "
        "(ring volumes). The Muon exchange sends each orthogonalized matrix from its owner to all ranks in "
        "the NS result dtype (bf16 by default on CUDA, fp32 on CPU).",
        "",
        comm_table(data["comm"]),
        "",
        "Per-rank Newton-Schulz FLOPs, max/mean (1.0 = perfect balance):",
        "",
        balance_table(data["balance"]),
    ]
    return "\n".join(lines) + "\n"
