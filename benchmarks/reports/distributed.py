"""bench_distributed.py's report: bytes per optimizer step vs the same layout with AdamW (DDP, FSDP2, HSDP, TP),
and per-rank NS load balance (measured in those runs, and analytic for larger Llamas)."""

from __future__ import annotations

from .format import header, markdown_table, run_line

NAME = "distributed"
SECTION = "distributed"
TARGET_COMM = 1.25
TARGET_BALANCE = 1.15
MIB = 2**20


def _total(r: dict) -> float:
    return r["layout_bytes_per_step"] + r["optimizer_bytes_per_step"]


def _balance(r: dict) -> float:
    loads = r["ns_flops_per_rank"]
    mean = sum(loads) / len(loads)
    return max(loads) / mean if mean > 0 else 1.0


def _rows(comm: list[dict], ddp: bool) -> list[list[str]]:
    rows = []
    for c in comm:  # {"model", "layout", "world", "batch", "runs": {"adamw": ..., "muon/<dtype>": ...}}
        if (c["layout"] == "ddp") != ddp:
            continue
        a = c["runs"]["adamw"]
        for opt, m in c["runs"].items():
            if opt == "adamw":
                continue
            ratio = _total(m) / _total(a)
            cells = (
                [c["model"]]
                + ([] if ddp else [c["layout"], c["batch"].replace("x", " × ")])
                + [
                    str(c["world"]),
                    opt.split("/")[1],
                    f"{m['muon_params'] / m['params']:.0%}",
                    f"{_total(a) / MIB:.2f}",
                    f"{m['optimizer_bytes_per_step'] / MIB:.2f}",
                    f"{ratio:.3f}",
                    "MET" if ratio <= TARGET_COMM else "NOT MET",
                    f"{_balance(m):.3f}",
                ]
            )
            rows.append(cells)
    return rows


def comm_tables(comm: list[dict]) -> list[str]:
    tail = ["Muon optimizer MiB/step/rank", "total / {}", f"≤ {TARGET_COMM}×", "NS max/mean (measured)"]
    ddp = markdown_table(
        ["model", "ranks", "NS dtype", "Muon share of params", "DDP all-reduce MiB/step/rank"]
        + [t.format("DDP-AdamW") for t in tail],
        _rows(comm, True),
        "lrlrrrrlr",
    )
    sharded = markdown_table(
        [
            "model",
            "layout",
            "batch / rank",
            "ranks",
            "NS dtype",
            "Muon share of params",
            "AdamW MiB/step/rank (the layout's own traffic)",
        ]
        + [t.format("AdamW, same layout") for t in tail],
        _rows(comm, False),
        "lllrlrrrrlr",
    )
    return [ddp, "", sharded]


def balance_table(balance: dict[str, dict]) -> str:
    rows = []
    for key, b in balance.items():  # "<model>@<ranks>"
        name, world = key.rsplit("@", 1)
        rows.append(
            [
                name,
                world,
                f"{b['lpt']:.3f}",
                f"{b['round_robin']:.3f}",
                "MET" if b["lpt"] <= TARGET_BALANCE else "NOT MET",
            ]
        )
    return markdown_table(
        ["model", "ranks", "max/mean (FLOP-balanced)", "max/mean (round-robin)", f"≤ {TARGET_BALANCE}"], rows, "lrrrl"
    )


def report(data: dict) -> str:
    run = run_line(data, busy="bytes do not depend on it") + "." if "date" in data else None
    lines = header("## Distributed Muon (CPU, gloo: DDP, FSDP2, HSDP, TP)", data, run) + [
        f"`python benchmarks/bench_distributed.py` — {data['steps']} counted steps after one warm-up step; bytes "
        "each rank sends per optimizer step (ring volumes of every collective, counted at the dispatcher), with "
        "hf_muon against AdamW in the same layout. DDP: hf_muon all-gathers each orthogonalized matrix from its "
        "owner in the NS result dtype. FSDP2 / HSDP / TP: each matrix's pieces go to its owner in the shard (or TP) "
        "group and come back by all-to-all: in bf16 with bf16 NS (the default on CUDA), in the update's own dtype "
        "(fp32) with fp32 NS. The first step's one-time checks (job-list agreement, replica check: a few scalars) "
        "are in the warm-up step. Batch per data-parallel rank: 2 × 32 tokens (TP ranks share theirs). TP's own "
        "traffic is activations, which grow with the tokens per step, while Muon's exchange grows with the "
        "parameters: TP runs at 8 × 256 tokens too, and real TP batches are larger still (FSDP2 / HSDP / DDP "
        "traffic does not depend on the batch). "
        "NS max/mean: the Newton-Schulz FLOPs each rank ran as an owner, max over mean "
        f"(target ≤ {TARGET_BALANCE}).",
        "",
        *comm_tables(data["comm"]),
        "",
        "Per-rank Newton-Schulz FLOPs from the shapes alone, max/mean (1.0 = perfect balance):",
        "",
        balance_table(data["balance"]),
    ]
    return "\n".join(lines) + "\n"
