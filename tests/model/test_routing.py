"""Routing on tiny configs of Llama (tied/untied), Qwen3, Qwen3-MoE, GPT-2, a BERT classifier and PEFT LoRA."""

import pytest
import torch
from conftest import tiny_bert_classifier, tiny_gpt2, tiny_llama, tiny_qwen3, tiny_qwen3_moe

import hf_muon
from hf_muon import Muon, param_groups, route, routing_report


def _by_name(routes):
    return {r.name: r for r in routes}


def _muon_ids(groups):
    return {id(p) for g in groups if g["use_muon"] for p in g["params"]}


@pytest.mark.parametrize("tie", [True, False])
def test_llama_routes_linears_to_muon_and_embeddings_to_adamw(tie):
    model = tiny_llama(tie=tie)
    r = _by_name(route(model))
    assert r["model.layers.0.self_attn.q_proj.weight"].kind == "muon"
    assert r["model.layers.1.mlp.down_proj.weight"].kind == "muon"
    assert r["model.embed_tokens.weight"].kind == "adamw"
    assert r["model.norm.weight"].kind == "adamw" and not r["model.norm.weight"].decay
    if tie:
        assert "lm_head.weight" not in r  # deduplicated: same tensor as the input embedding
        assert model.lm_head.weight is model.model.embed_tokens.weight
        assert r["model.embed_tokens.weight"].reason == "input and output embedding (tied)"
    else:
        assert r["lm_head.weight"].kind == "adamw" and r["lm_head.weight"].reason == "output embedding"
    groups = param_groups(model)
    assert id(model.lm_head.weight) not in _muon_ids(groups)
    assert id(model.model.embed_tokens.weight) not in _muon_ids(groups)
    n_muon = sum(1 for x in r.values() if x.kind == "muon")
    assert n_muon == 2 * 7  # q,k,v,o,gate,up,down per layer
    # AdamW groups come first and biases/norms have no weight decay
    assert groups[0]["use_muon"] is False and groups[-1]["use_muon"] is True
    assert all(g["weight_decay"] == 0.0 for g in groups if any(p.ndim == 1 for p in g["params"]))


def test_qwen3_qk_norms_go_to_adamw():
    r = _by_name(route(tiny_qwen3()))
    assert r["model.layers.0.self_attn.q_norm.weight"].kind == "adamw"
    assert r["model.layers.0.self_attn.k_proj.weight"].kind == "muon"


def test_qwen3_moe_experts_on_muon_by_default_and_router_on_adamw():
    model = tiny_qwen3_moe()
    r = _by_name(route(model, moe_experts="adamw"))  # the opt-out keeps the old behaviour
    assert r["model.layers.0.mlp.experts.gate_up_proj"].kind == "adamw"
    assert r["model.layers.0.mlp.gate.weight"].kind == "adamw"
    assert r["model.layers.0.mlp.gate.weight"].reason == "MoE router"
    r2 = _by_name(route(model))  # default: per-expert Muon
    assert r2["model.layers.0.mlp.experts.gate_up_proj"].reason.startswith("MoE experts, per expert")
    e = r2["model.layers.0.mlp.experts.down_proj"]
    assert e.kind == "muon" and e.experts and not e.transposed
    assert r2["model.layers.0.mlp.gate.weight"].kind == "adamw"
    opt = Muon(param_groups(model, moe_experts="muon"), lr=1e-3)
    x = torch.randint(0, 128, (2, 12))
    model(input_ids=x, labels=x).loss.backward()
    w0 = model.model.layers[0].mlp.experts.down_proj.detach().clone()
    opt.step()
    assert not torch.equal(w0, model.model.layers[0].mlp.experts.down_proj)


def test_gpt2_conv1d_is_transposed_and_position_table_is_adamw():
    r = _by_name(route(tiny_gpt2()))
    c = r["transformer.h.0.attn.c_attn.weight"]
    assert c.kind == "muon" and c.transposed and c.shape == (32, 96)
    assert r["transformer.h.0.attn.c_attn.bias"].kind == "adamw"
    assert r["transformer.wpe.weight"].kind == "adamw"
    assert r["transformer.wte.weight"].kind == "adamw"


def test_bert_classifier_head_outside_backbone_is_adamw():
    r = _by_name(route(tiny_bert_classifier()))
    assert r["classifier.weight"].kind == "adamw" and r["classifier.weight"].reason == "head outside the backbone"
    assert r["bert.encoder.layer.0.attention.self.query.weight"].kind == "muon"
    assert r["bert.embeddings.position_embeddings.weight"].kind == "adamw"


def _lora(model, **kw):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **kw))


def test_peft_lora_policies_and_modules_to_save():
    model = _lora(tiny_llama(), modules_to_save=["lm_head"])
    routes = route(model, lora_policy="adamw")
    trainable = [r for r in routes if r.kind != "frozen"]
    assert all(r.kind == "adamw" for r in trainable)  # policy adamw: everything on AdamW
    save = [r for r in routes if "modules_to_save" in r.name and r.kind != "frozen"]
    assert save and all(r.kind == "adamw" for r in save)
    assert any(r.kind == "frozen" and r.name.endswith("q_proj.base_layer.weight") for r in routes)
    with pytest.raises(ValueError, match=r"(?s)no parameter was routed.*--optim_args lora_policy=both"):
        param_groups(model, lora_policy="adamw")  # the error names the fix
    assert {r.kind for r in route(model) if "lora_" in r.name and r.kind != "frozen"} == {"muon"}  # default: both
    b_only = _by_name(route(model, lora_policy="b_only"))
    a = next(r for n, r in b_only.items() if "lora_A" in n)
    b = next(r for n, r in b_only.items() if "lora_B" in n)
    assert a.kind == "adamw" and b.kind == "muon"
    both = route(model, lora_policy="both")
    assert all(r.kind == "muon" for r in both if "lora_" in r.name and r.kind != "frozen")
    groups = param_groups(model, lora_policy="both")
    opt = Muon(groups, lr=1e-3)
    x = torch.randint(0, 128, (2, 8))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()


def test_dora_magnitude_stays_on_adamw():
    model = _lora(tiny_llama(), use_dora=True)
    routes = route(model, lora_policy="both")
    mags = [r for r in routes if "lora_magnitude_vector" in r.name]
    assert mags and all(r.kind == "adamw" for r in mags)


def test_include_exclude_overrides():
    model = tiny_llama()
    r = _by_name(route(model, exclude=[r"\.o_proj\."], include=[r"lm_head"]))
    assert r["model.layers.0.self_attn.o_proj.weight"].kind == "adamw"
    assert r["model.layers.0.self_attn.o_proj.weight"].reason == "excluded by pattern"
    assert r["lm_head.weight"].kind == "muon"
    with pytest.raises(ValueError, match="Muon needs"):
        route(model, include=["norm"])
    with pytest.raises(ValueError, match="invalid routing regex"):
        route(model, include=["("])
    with pytest.raises(ValueError, match="valid: adamw, b_only, both"):
        route(model, lora_policy="all")


def test_no_muon_params_is_a_loud_error_with_the_report():
    model = tiny_llama()
    with pytest.raises(ValueError, match=r"(?s)no parameter was routed.*route  reason"):
        param_groups(model, exclude=[r"proj"])


def test_flattened_params_are_refused():
    class FlatParameter(torch.nn.Parameter):
        pass

    model = torch.nn.Module()
    model.flat = FlatParameter(torch.zeros(100))
    with pytest.raises(ValueError, match="FSDP v1 FlatParameter.*fully_shard"):
        route(model)
    ds = torch.nn.Linear(4, 4)
    ds.weight.ds_id = 3
    with pytest.raises(ValueError, match="DeepSpeed ZeRO partitioned"):
        route(ds)


def test_report_table_and_counts():
    text = routing_report(tiny_llama())
    assert "model.layers.0.mlp.up_proj.weight" in text and "nn.Linear weight" in text
    assert "muon      14 tensors" in text
    assert "frozen     0 tensors" in text


def test_param_groups_carry_options_lrs_and_names():
    model = tiny_gpt2()
    groups = param_groups(model, lr=2e-2, adamw_lr=1e-3, weight_decay=0.05, ns_steps=7, scale_mode="keller")
    muon = [g for g in groups if g["use_muon"]]
    assert all(g["lr"] == 2e-2 and g["ns_steps"] == 7 and g["transposed"] for g in muon)
    assert all(g["lr"] == 1e-3 for g in groups if not g["use_muon"])
    assert all(len(g["params"]) == len(g["param_names"]) for g in groups)
    opt = hf_muon.Muon(groups)
    assert opt.param_groups[-1]["scale_mode"] == "keller"
    decayed = [g for g in groups if g["weight_decay"] == 0.05]
    assert decayed and all(p.ndim >= 2 for g in decayed for p in g["params"])
