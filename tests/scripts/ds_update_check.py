"""DeepSpeed's Muon through hf_muon's adapter vs hf_muon's own Muon, on the same model and batches.

    DS_ACCELERATOR=cpu torchrun --nproc_per_node 2 tests/scripts/ds_update_check.py --out result.json

For ZeRO stages 1, 2 and 3: a tiny Llama gets `--steps` steps from DeepSpeed (hf_muon routing, lr translation)
and, in the same process, from hf_muon's Muon with the same rule (Keller's quintic, 5 Newton-Schulz steps,
fp32). Every rank sees the same batch, so DeepSpeed's averaged gradient equals one process's. Written: the
relative difference of the weight change W_T − W_0 (Muon weights, and all weights), with DeepSpeed's
Newton-Schulz in bf16 (what DeepSpeed picks on this CPU) and in fp32 (its accelerator told bf16 is unsupported,
in this script only). Also: an explicit optimizer section on a GPT-2 (DeepSpeed tags by name, so `wte` and
`wpe` land on Muon) must stop at `deepspeed.initialize`.
"""

import argparse
import copy
import json

import deepspeed
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import hf_muon
from hf_muon.integrations import deepspeed as adapter

LR, WD = 2e-2, 0.1


def tiny_llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg)


def batches(n):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 128, (4, 16), generator=g) for _ in range(n)]


def reference(model, data):
    cfg = hf_muon.MuonConfig(
        lr=LR,
        weight_decay=WD,
        coefficients="keller",
        ns_method="newton_schulz",
        ns_dtype="float32",
        distributed="none",
    )
    opt = hf_muon.create_optimizer(model, cfg)
    for x in data:
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def through_deepspeed(model, data, stage):
    cfg = hf_muon.MuonConfig(lr=LR, weight_decay=WD, ns_method="newton_schulz")
    opt, _ = adapter.build(model, cfg)
    ds_cfg = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": stage},
        "gradient_clipping": 1.0,
    }
    adapter.check_config(ds_cfg, cfg, set())
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=ds_cfg)
    for x in data:
        loss = engine(input_ids=x, labels=x).loss
        engine.backward(loss)
        engine.step()
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        return {n: p.detach().clone() for n, p in engine.module.named_parameters()}


def rel(after, ref, before, names):
    num = sum(((after[n] - before[n]) - (ref[n] - before[n])).norm() ** 2 for n in names) ** 0.5
    den = sum((ref[n] - before[n]).norm() ** 2 for n in names) ** 0.5
    return float(num / den)


def explicit_section_mismatch_stops():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    cfg = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 2},
        "optimizer": {"type": "Muon", "params": {"lr": 1e-3}},
    }
    adapter.expect_explicit(hf_muon.MuonConfig())
    try:
        deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
    except RuntimeError as e:
        return str(e)
    finally:
        adapter._PENDING.clear()
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    deepspeed.comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    data = batches(a.steps)
    base = tiny_llama()
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    ref = reference(copy.deepcopy(base), data)
    routes = hf_muon.route(base)
    muon = [r.name for r in routes if r.kind == "muon"]
    out = {"steps": a.steps, "lr": LR, "weight_decay": WD, "muon_tensors": len(muon), "stages": {}}
    accel = deepspeed.get_accelerator()
    for ns in ("bf16", "fp32"):
        if ns == "fp32":
            accel.is_bf16_supported = lambda: False  # this script only: DeepSpeed's NS in fp32
        for stage in (1, 2, 3):
            after = through_deepspeed(copy.deepcopy(base), data, stage)
            out["stages"].setdefault(str(stage), {})[ns] = {
                "rel_update_diff_muon": rel(after, ref, before, muon),
                "rel_update_diff_all": rel(after, ref, before, list(before)),
            }
    out["explicit_section_gpt2"] = explicit_section_mismatch_stops()
    if torch.distributed.get_rank() == 0:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
        print(json.dumps(out, indent=1))
    torch.distributed.destroy_process_group()  # gloo can abort at interpreter exit otherwise (pytorch#190489)


if __name__ == "__main__":
    main()
