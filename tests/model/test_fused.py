"""split_fused: fused QKV / gate_up weights are orthogonalized and scaled block by block, so a fused model
gets exactly the update its unfused twin gets; detection from HF configs; checkpoints stay weights_only."""

import io

import pytest
import torch
from conftest import tiny_gpt2, tiny_qwen3_moe

import hf_muon
from hf_muon import Muon
from hf_muon.model.fused import detect
from hf_muon.ns.blocks import Split, assemble, blocks


@pytest.mark.parametrize(
    "split, shape",
    [
        (Split(-2, (8, 4, 4)), (16, 6)),  # Phi-3 qkv_proj with GQA
        (Split(-1, (5, 5, 5)), (5, 15)),  # GPT-2 c_attn (Conv1D, stored (in, out))
        (Split(-2, (3, 3, 3), 4), (36, 7)),  # GPT-NeoX query_key_value, per-head [q, k, v]
        (Split(-2, (6, 6)), (4, 12, 5)),  # MoE experts gate_up_proj (E, 2I, H)
        (Split(-1, (1, 1), 6), (4, 5, 12)),  # GPT-OSS experts (E, H, 2I), gate/up alternating columns
    ],
)
def test_blocks_and_assemble_are_inverse(split, shape):
    t = torch.randn(shape)
    parts = blocks(t, split)
    assert len(parts) == len(split.sizes)
    assert torch.equal(assemble(parts, split, shape), t)
    assert torch.allclose(
        assemble(parts, split, shape, (2.0, 3.0, 1.0)[: len(parts)]),
        torch.cat([b * r for b, r in zip(parts, (2.0, 3.0, 1.0))], dim=split.axis)
        if split.groups == 1
        else assemble([b * r for b, r in zip(parts, (2.0, 3.0, 1.0))], split, shape),
    )


def test_neox_interleaved_blocks_pick_each_heads_rows():
    t = torch.arange(24.0).reshape(24, 1)  # 4 heads × [q(2), k(2), v(2)]
    q, k, v = blocks(t, Split(-2, (2, 2, 2), 4))
    assert k.flatten().tolist() == [2, 3, 8, 9, 14, 15, 20, 21]
    assert q.flatten().tolist() == [0, 1, 6, 7, 12, 13, 18, 19]


class Separate(torch.nn.Module):
    def __init__(self, d, kv):
        super().__init__()
        self.q, self.k, self.v = (
            torch.nn.Linear(d, d, bias=False),
            torch.nn.Linear(d, kv, bias=False),
            torch.nn.Linear(d, kv, bias=False),
        )


@pytest.mark.parametrize("scale_mode", ["moonlight", "keller", "mup"])
def test_split_fused_qkv_equals_separate_projections(scale_mode):
    """Three steps on a fused (q + 2kv, d) weight with split == the same steps on q, k, v as separate Linears."""
    d, kv = 16, 8
    sep = Separate(d, kv)
    fused = torch.nn.Parameter(torch.cat([sep.q.weight, sep.k.weight, sep.v.weight]).detach().clone())
    kw = dict(lr=0.02, weight_decay=0.1, scale_mode=scale_mode, ns_dtype="float32", coefficients="polar_express")
    opt_sep = Muon(list(sep.parameters()), **kw)
    opt_fused = Muon([dict(params=[fused], split=Split(-2, (d, kv, kv), 1, "qkv").spec())], **kw)
    opt_whole = Muon([torch.nn.Parameter(fused.detach().clone())], **kw)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [torch.randn(w.shape, generator=g) for w in (sep.q.weight, sep.k.weight, sep.v.weight)]
        for w, gr in zip((sep.q.weight, sep.k.weight, sep.v.weight), grads):
            w.grad = gr
        fused.grad = torch.cat(grads)
        opt_whole.param_groups[0]["params"][0].grad = torch.cat(grads)
        opt_sep.step(), opt_fused.step(), opt_whole.step()
    expected = torch.cat([sep.q.weight, sep.k.weight, sep.v.weight])
    assert torch.allclose(fused, expected, atol=1e-6, rtol=0)
    # and it is a real difference from orthogonalizing the fused matrix whole
    assert (opt_whole.param_groups[0]["params"][0] - expected).abs().max() > 1e-3


def test_split_fused_conv1d_columns_equal_separate():
    """GPT-2's Conv1D stores (in, out): a column split must equal three (in, d) Conv1D weights updated alone."""
    d = 12
    ws = [torch.nn.Parameter(torch.randn(d, d)) for _ in range(3)]
    fused = torch.nn.Parameter(torch.cat([w.detach() for w in ws], dim=1).clone())
    kw = dict(lr=0.02, scale_mode="keller", ns_dtype="float32")
    opt_sep = Muon([dict(params=ws, transposed=True)], **kw)
    opt_fused = Muon([dict(params=[fused], transposed=True, split=Split(-1, (d, d, d)).spec())], **kw)
    for step in range(2):
        grads = [torch.randn(d, d, generator=torch.Generator().manual_seed(10 * step + i)) for i in range(3)]
        for w, gr in zip(ws, grads):
            w.grad = gr
        fused.grad = torch.cat(grads, dim=1)
        opt_sep.step(), opt_fused.step()
    assert torch.allclose(fused, torch.cat(list(ws), dim=1), atol=1e-6, rtol=0)


def _cfg_model(kind):
    from transformers import (
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        GptOssConfig,
        GptOssForCausalLM,
        Phi3Config,
        Phi3ForCausalLM,
    )

    torch.manual_seed(0)
    if kind == "phi3":
        return Phi3ForCausalLM(
            Phi3Config(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=2,
                pad_token_id=0,
            )
        )
    if kind == "neox":
        return GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
            )
        )
    if kind == "gpt_oss":
        return GptOssForCausalLM(
            GptOssConfig(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=16,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=8,
                num_local_experts=4,
                num_experts_per_tok=2,
            )
        )
    return {"gpt2": tiny_gpt2, "qwen3_moe": tiny_qwen3_moe}[kind]()


@pytest.mark.parametrize(
    "kind, name, expected",
    [
        ("phi3", "model.layers.0.self_attn.qkv_proj.weight", Split(-2, (32, 16, 16), 1, "qkv")),
        ("phi3", "model.layers.0.mlp.gate_up_proj.weight", Split(-2, (48, 48), 1, "gate_up")),
        ("neox", "gpt_neox.layers.0.attention.query_key_value.weight", Split(-2, (8, 8, 8), 4, "qkv")),
        ("gpt2", "transformer.h.0.attn.c_attn.weight", None),  # filled in below from the config
        ("qwen3_moe", "model.layers.0.mlp.experts.gate_up_proj", None),
        ("gpt_oss", "model.layers.0.mlp.experts.gate_up_proj", Split(-1, (1, 1), 16, "gate_up")),
    ],
)
def test_routing_detects_fused_layouts_from_the_config(kind, name, expected):
    model = _cfg_model(kind)
    routes = {r.name: r for r in hf_muon.route(model, moe_experts="muon", split_fused=True)}
    r = routes[name]
    if expected is None:
        cfg = model.config
        expected = (
            Split(-1, (cfg.n_embd,) * 3, 1, "qkv")
            if kind == "gpt2"
            else Split(-2, (cfg.moe_intermediate_size,) * 2, 1, "gate_up")
        )
    assert r.kind == "muon" and r.split == expected, r.reason
    assert "split" in r.reason
    # off by default; the report says so per parameter when on
    assert {x.name: x for x in hf_muon.route(model, moe_experts="muon")}[name].split is None
    groups = hf_muon.param_groups(model, moe_experts="muon", split_fused=True)
    assert any(g.get("split") == expected.spec() for g in groups)
    # a full step works on the real model (blocks batched with the other matrices)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Muon(groups, lr=1e-3).step()
    assert not torch.equal(dict(model.named_parameters())[name], before[name])


def test_unknown_fused_layout_is_kept_whole_and_reported():
    class Cfg:
        model_type = "falcon"
        hidden_size, num_attention_heads = 32, 4

    lin = torch.nn.Linear(32, 96)
    split, note = detect(
        "h.0.self_attention.query_key_value.weight", lin, lin.weight, Cfg(), transposed=False, experts=False
    )
    assert split is None and "layout not known" in note


def test_split_shape_mismatch_is_a_clear_error():
    w = torch.nn.Parameter(torch.randn(10, 4))
    with pytest.raises(ValueError, match=r"split_fused: .*shape \(10, 4\).*needs 12 along axis -2"):
        Muon([dict(params=[w], split=Split(-2, (4, 4, 4)).spec(), param_names=["attn.qkv_proj.weight"])])


def test_split_groups_round_trip_weights_only_and_through_optim_args(tmp_path):
    model = _cfg_model("phi3")
    opt = hf_muon.create_optimizer(model, lr=1e-3, split_fused=True)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    again = hf_muon.create_optimizer(model, lr=1e-3, split_fused=True)
    again.load_state_dict(sd)
    assert [g.get("split") for g in again.param_groups] == [g.get("split") for g in opt.param_groups]

    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(str(tmp_path), optim="muon", optim_args="split_fused=true", report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args)
    splits = [g["split"]["label"] for g in trainer.create_optimizer().param_groups if g.get("split")]
    assert sorted(splits) == ["gate_up", "qkv"]
