"""A model is routed once per optimizer build: param_groups takes precomputed ``routes=``, and the Trainer
factory routes once for both the optimizer's groups and the announced routing table."""

import pytest
from conftest import tiny_llama

import hf_muon
from hf_muon import MuonConfig, param_groups, route
from hf_muon.model import routing


@pytest.fixture
def route_calls(monkeypatch):
    """Counts route() calls, whatever name the caller imported it under (every call reads the model once)."""
    calls = []
    original = routing._read_model

    def counting(model, cfg):
        calls.append(model)
        return original(model, cfg)

    monkeypatch.setattr(routing, "_read_model", counting)
    return calls


def test_param_groups_with_routes_does_not_route_again(route_calls):
    model = tiny_llama()
    routes = route(model, MuonConfig(exclude=r"o_proj"))
    assert len(route_calls) == 1
    groups = param_groups(model, routes=routes)
    assert len(route_calls) == 1
    assert {id(p) for g in groups if g["use_muon"] for p in g["params"]} == {
        id(r.param) for r in routes if r.kind == "muon"
    }
    with pytest.raises(ValueError, match="exclude is a routing knob and routes= are given"):
        param_groups(model, routes=routes, exclude="q_proj")


def test_create_optimizer_routes_once(route_calls):
    hf_muon.create_optimizer(tiny_llama(), lr=1e-3)
    assert len(route_calls) == 1


def test_trainer_factory_routes_once(route_calls, tmp_path):
    from transformers import TrainingArguments

    from hf_muon.integrations.transformers import MuonFactory, register

    register()
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], optim="hf_muon", optim_args="exclude=o_proj"
    )
    route_calls.clear()  # building the TrainingArguments validates the launch; count the optimizer build only
    model = tiny_llama()
    opt = MuonFactory()(model, args=args, optim_args=args.optim_args)
    assert len(route_calls) == 1
    table = (tmp_path / "hf_muon_routing.txt").read_text()
    assert "o_proj.weight" in table and "excluded by pattern" in table
    assert not any(
        p is model.model.layers[0].self_attn.o_proj.weight
        for g in opt.param_groups
        if g["use_muon"]
        for p in g["params"]
    )


def test_route_takes_a_config_and_rejects_non_routing_keywords():
    model = tiny_llama()
    by_cfg = route(model, MuonConfig(moe_experts="adamw", exclude="o_proj"))
    by_kw = route(model, moe_experts="adamw", exclude="o_proj")
    assert [(r.name, r.kind, r.reason) for r in by_cfg] == [(r.name, r.kind, r.reason) for r in by_kw]
    with pytest.raises(TypeError, match="unexpected keyword argument 'ns_steps'; routing knobs: conv, exclude"):
        route(model, ns_steps=3)
