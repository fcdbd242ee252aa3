"""Routing from how the module uses the weight (issue 26): orientation of expert stacks without an
``is_transposed`` flag (Llama-4 ``bmm(x, W)``), the gate|up layout of fused expert stacks (Aria, Llama-4: halves
cut with ``chunk``; GPT-OSS: alternating columns), outputs cut into blocks by the calling module (JetMoE's fused
GLU ``input_linear`` and ``kv_proj``), and parameters multiplied as matrices that are no Linear weight (XLNet's
einsum projections, RecurrentGemma's per-head gate blocks); each routed model takes a finite step."""

import warnings

import pytest
import torch
from test_architecture_sweep import tiny_config

import hf_muon


def _model(model_type):
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(model_type)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


def _routes(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {r.name: r for r in hf_muon.route(model, **kw)}


EXPECT = {
    "llama4_text": {
        "model.layers.0.feed_forward.experts.gate_up_proj": (True, True, "columns 128+128"),
        "model.layers.0.feed_forward.experts.down_proj": (True, True, None),
    },
    "aria_text": {"model.layers.0.mlp.experts.gate_up_proj": (True, True, "columns 128+128")},
    "gpt_oss": {"model.layers.0.mlp.experts.gate_up_proj": (True, True, "columns 1+1 interleaved over 128 groups")},
    "jetmoe": {
        "model.layers.0.mlp.input_linear.weight": (False, True, "rows 128+128"),
        "model.layers.0.self_attention.kv_proj.weight": (False, False, "rows 32+32"),
    },
    "xlnet": {
        "transformer.layer.0.rel_attn.q": (True, False, None),
        "transformer.layer.0.rel_attn.o": (False, False, None),
    },
    "recurrent_gemma": {"model.layers.0.temporal_block.rg_lru.input_gate_weight": (True, True, None)},
}


@pytest.mark.parametrize("model_type", EXPECT)
def test_routes_follow_how_the_module_multiplies_by_the_weight(model_type):
    model = _model(model_type)
    routes = _routes(model, split_fused=True)
    for name, (transposed, experts, split) in EXPECT[model_type].items():
        r = routes[name]
        assert (r.kind, r.transposed, r.experts) == ("muon", transposed, experts), (name, r.reason)
        if split is not None:
            assert r.split is not None and split in r.split.describe(), (name, r.reason)
    opt = hf_muon.create_optimizer(model, lr=1e-3, split_fused=True)
    x = torch.randint(3, 100, (1, 8))
    model(input_ids=x, labels=x, use_cache=False).loss.backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_parameters_the_module_does_not_multiply_by_stay_on_adamw_saying_so():
    routes = _routes(_model("xlnet"))
    for name in ("transformer.layer.0.rel_attn.seg_embed", "transformer.layer.0.rel_attn.r_w_bias"):
        assert routes[name].kind == "adamw" and "does not multiply by it" in routes[name].reason
