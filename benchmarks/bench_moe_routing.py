"""MoE expert routing: 3-D expert stacks on Muon (per expert) vs on AdamW, the rest identical.

A Qwen3-MoE (hidden 128, 4 layers, 8 experts top-2, expert width 128) trained on TinyStories with hf_muon at
each lr of a grid and two seeds, once with ``moe_experts="muon"`` and once with ``moe_experts="adamw"``; same
data, batches and schedule as the convergence benchmark (:mod:`benchmarks.training`). Reported: each policy's
best lr by mean final validation loss, mean ± std over seeds, the share of parameters Muon updates, and the
per-seed paired difference at each policy's best lr. This is the evidence behind the ``moe_experts`` default.

    python benchmarks/bench_moe_routing.py [--tiny]
    python benchmarks/bench_moe_routing.py --from-json benchmarks/results/moe_routing.json   # report only
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import cli, peers
from benchmarks.machine import contended
from benchmarks.reports import moe_routing as REPORT
from benchmarks.training import RunSpec, prepare_data, train_run

POLICIES = ("muon", "adamw")
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
SEEDS = (0, 1)
FULL = dict(
    hidden=128,
    layers=4,
    experts=8,
    expert_width=128,
    vocab_keep=2047,
    block=128,
    batch=8,
    steps=300,
    eval_every=50,
    val_blocks=32,
    eval_batch=16,
    max_tokens=None,
)
TINY = dict(
    hidden=32,
    layers=2,
    experts=4,
    expert_width=16,
    vocab_keep=255,
    block=32,
    batch=4,
    steps=12,
    eval_every=6,
    val_blocks=4,
    eval_batch=4,
    max_tokens=20_000,
)


def moe_model(size: dict, vocab: int, seed: int):
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3MoeConfig(
        vocab_size=vocab,
        hidden_size=size["hidden"],
        intermediate_size=2 * size["hidden"],
        moe_intermediate_size=size["expert_width"],
        num_hidden_layers=size["layers"],
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=size["hidden"] // 4,
        num_experts=size["experts"],
        num_experts_per_tok=2,
        max_position_embeddings=size["block"],
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    return Qwen3MoeForCausalLM(cfg)


def routed_as(policy: str):
    """hf_muon at its defaults with 3-D expert stacks routed by ``policy``."""
    import dataclasses

    build = peers.hf_muon_optimizer()
    return lambda r, lr, tiny: build(dataclasses.replace(r, moe_experts=policy), lr, tiny)


def muon_share(model, policy: str) -> float:
    import hf_muon

    routes = [r for r in hf_muon.route(model, moe_experts=policy) if r.kind != "frozen"]
    return sum(r.param.numel() for r in routes if r.kind == "muon") / sum(r.param.numel() for r in routes)


def measure(args, load, device) -> None:
    from hf_muon.lab.data import resolve_data_dir

    size = TINY if args.tiny else FULL
    started = time.time()
    data = prepare_data(
        str(resolve_data_dir(None, required=True)),
        block=size["block"],
        batch=size["batch"],
        steps=size["steps"],
        vocab_keep=size["vocab_keep"],
        val_blocks=size["val_blocks"],
        max_tokens=size["max_tokens"],
    )
    runs, shares = [], {}
    for seed in SEEDS:
        base = moe_model(size, data.vocab, seed)
        for policy in POLICIES:
            shares[policy] = muon_share(base, policy)
            for lr in LRS:
                spec = RunSpec(
                    f"moe_experts={policy} lr {lr:g} seed {seed}",
                    policy,
                    lr,
                    routed_as(policy),
                    f"hf_muon defaults, moe_experts={policy}",
                )
                r = train_run(
                    spec,
                    base,
                    data,
                    steps=size["steps"],
                    eval_every=size["eval_every"],
                    eval_batch=size["eval_batch"],
                    device=device,
                )
                r.update(seed=seed, policy=policy)
                r.pop("train_loss", None)
                runs.append(r)
                print(f"  {spec.name:<36} final val {r['final_val_loss']}  {r['status']}", flush=True)
    result = cli.begin(args, "moe_routing", load, {"model": list(SEEDS)})
    result.update(
        config={
            **size,
            "lrs": list(LRS),
            "seeds": list(SEEDS),
            "params": sum(p.numel() for p in moe_model(size, data.vocab, 0).parameters()),
        },
        data=data.info,
        runs=runs,
        muon_share=shares,
    )
    result["summary"] = REPORT.summarize(result)
    cli.finish(result, started, any(contended(r.get("other_cores")) for r in runs))
    cli.publish(args, result, REPORT)


def main(argv=None) -> int:
    ap = cli.standard_parser(__doc__, "moe_routing", "hidden-32 2-layer MoE, 12 steps (smoke test); no RESULTS.md")
    return cli.run(ap.parse_args(argv), REPORT, measure)


if __name__ == "__main__":
    raise SystemExit(main())
