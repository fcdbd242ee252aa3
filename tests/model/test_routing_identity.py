"""Routing by identity and structure (issue 26): a weight tied to an embedding stays on AdamW in any registration
order; a plain-PyTorch model's likely output head is named in a warning with the exclude= that keeps it on AdamW;
every weight inside a router module stays on AdamW; a block shared across depth is routed as hidden layers."""

import warnings

import pytest
import torch
from torch import nn

import hf_muon


class _Tied(nn.Module):
    def __init__(self, head_first: bool):
        super().__init__()
        if head_first:
            self.head = nn.Linear(32, 100)
            self.emb = nn.Embedding(100, 32)
        else:
            self.emb = nn.Embedding(100, 32)
            self.head = nn.Linear(32, 100)
        self.mid = nn.Linear(32, 32)
        self.emb.weight = self.head.weight


@pytest.mark.parametrize("head_first", [True, False])
def test_a_weight_tied_to_an_embedding_is_adamw_in_either_registration_order(head_first):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        routes = {r.name: r for r in hf_muon.route(_Tied(head_first))}
    tied = routes["head.weight" if head_first else "emb.weight"]
    assert tied.kind == "adamw" and tied.reason == "tied to an embedding"
    assert routes["mid.weight"].kind == "muon"


def test_the_last_linear_of_a_plain_model_is_named_with_the_exclude_that_keeps_it_on_adamw():
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    with pytest.warns(UserWarning, match=r"'2.weight' \(10, 128\) is the last nn.Linear.*exclude='\^2\[\.\]'"):
        hf_muon.route(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        routes = {r.name: r for r in hf_muon.route(model, exclude=r"^2[.]")}
    assert routes["2.weight"].kind == "adamw" and routes["0.weight"].kind == "muon"


def test_hf_models_get_no_plain_head_warning():
    from conftest import tiny_llama

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf_muon.route(tiny_llama())


class _TopKGating(nn.Module):  # jetmoe's shape: a router class wrapping a Linear whose leaf is not a router name
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(32, 4, bias=False)


class _RouterMLP(nn.Module):  # zaya's shape: an MLP that scores experts
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 32)
        self.out_proj = nn.Linear(32, 5)


class _Router(nn.Module):
    def __init__(self):
        super().__init__()
        self.down_proj = nn.Linear(32, 32)
        self.router_mlp = _RouterMLP()


class _Moe(nn.Module):
    def __init__(self):
        super().__init__()
        self.router = _TopKGating()
        self.gate = _Router()
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 32)


def test_every_weight_inside_a_router_module_stays_on_adamw():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        routes = {r.name: r for r in hf_muon.route(_Moe())}
    for name in (
        "router.layer.weight",
        "gate.down_proj.weight",
        "gate.router_mlp.fc1.weight",
        "gate.router_mlp.out_proj.weight",
    ):
        assert routes[name].kind == "adamw" and routes[name].reason == "MoE router", name
    assert routes["up.weight"].kind == "muon" and routes["down.weight"].kind == "muon"


def test_a_block_shared_across_depth_is_routed_as_hidden_layers():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            shared = nn.Linear(16, 16)
            self.layers = nn.ModuleList([nn.Sequential(shared, nn.ReLU()) for _ in range(3)])
            self.out = nn.Linear(16, 50)
            self.out.weight = self.emb.weight

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        routes = {r.name: r for r in hf_muon.route(Net())}
    assert routes["layers.0.0.weight"].kind == "muon"
    assert routes["emb.weight"].kind == "adamw"
    assert torch.equal(torch.tensor(len(routes)), torch.tensor(4))  # emb, shared weight+bias, out.bias
