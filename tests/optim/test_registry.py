"""One source per registry (issue 28): the variant registry's names are the variant knob's choices, each
variant declares its state key and the state policy keeps exactly those in the momentum dtype; the group knobs
validated per param group are the keys of MuonConfig.group_defaults()."""

import copy

import pytest
import torch

from hf_muon import Muon, MuonConfig
from hf_muon.config import GROUP_KNOBS, KNOBS, VARIANTS
from hf_muon.optim import state as S
from hf_muon.optim.variants import STATE_KEYS
from hf_muon.optim.variants import VARIANTS as REGISTRY


def test_the_registry_names_are_the_variant_knobs_choices():
    assert tuple(REGISTRY) == VARIANTS == tuple(KNOBS["variant"].metadata["choices"])


def test_the_state_policy_keys_are_the_buffer_and_the_variants_declared_keys():
    assert S.momentum_policy_keys() == (S.MOMENTUM, *STATE_KEYS)
    assert set(STATE_KEYS) == {v.state_key for v in REGISTRY.values() if v.state_key}


@pytest.mark.parametrize("variant", [n for n, v in REGISTRY.items() if v.state_key])
def test_each_variants_declared_state_survives_a_resume_in_fp32(variant):
    p = torch.nn.Parameter(torch.randn(16, 32).bfloat16())
    opt = Muon([{"params": [p], "use_muon": True}], lr=1e-3, variant=variant, momentum_dtype="float32")
    p.grad = torch.randn(16, 32).bfloat16()
    opt.step()
    key = REGISTRY[variant].state_key
    assert opt.state[p][key].dtype == torch.float32
    q = torch.nn.Parameter(p.detach().clone())
    twin = Muon([{"params": [q], "use_muon": True}], lr=1e-3, variant=variant, momentum_dtype="float32")
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert twin.state[q][key].dtype == torch.float32 and torch.equal(twin.state[q][key], opt.state[p][key])


def test_group_knobs_are_the_group_defaults():
    assert tuple(MuonConfig().group_defaults()) == GROUP_KNOBS
