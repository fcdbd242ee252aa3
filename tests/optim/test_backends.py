"""Distributed Muon on CPU/gloo: FLOP-balanced owners, DDP and FSDP2 equivalence across world sizes,
resume across world sizes, refusals of flat-parameter backends. The other layouts (HSDP, TP, FSDP2 + TP,
experts), the agreement checks and the fault tests: test_layouts.py."""

import pytest
import torch
from dist_helpers import max_rel_diff as _max_rel_diff
from dist_helpers import single as _single
from dist_helpers import torchrun as _torchrun

from hf_muon import Muon, param_groups, route
from hf_muon.optim.backends import assign_owners, imbalance, ns_cost, round_robin


def _llama_shapes(h, layers, inter, kv_ratio=1):
    kv = h // kv_ratio
    return [s for _ in range(layers) for s in [(h, h), (kv, h), (kv, h), (h, h), (inter, h), (inter, h), (h, inter)]]


@pytest.mark.parametrize("world", [2, 4, 8])
@pytest.mark.parametrize(
    "shapes",
    [_llama_shapes(256, 4, 688), _llama_shapes(2048, 16, 5632, 4), _llama_shapes(576, 30, 1536, 3)],
    ids=["7.4M", "1B", "135M"],
)
def test_flop_balanced_assignment(world, shapes):
    costs = [ns_cost(s, 5) for s in shapes]
    owners = assign_owners(costs, world)
    assert imbalance(costs, owners, world) <= 1.15
    assert imbalance(costs, owners, world) <= imbalance(costs, round_robin(costs, world), world)
    assert owners == assign_owners(costs, world)  # deterministic: every rank agrees without talking


def test_ns_cost():
    # the NS FLOP formula steps·(4m²n + 2m³), m = min side (hf_muon.ns.cost)
    assert ns_cost((256, 688), 5) == 5 * (4 * 256 * 256 * 688 + 2 * 256**3)
    assert ns_cost((688, 256), 5) == ns_cost((256, 688), 5)
    assert ns_cost((4, 32, 16), 5) == 4 * 5 * (4 * 16 * 16 * 32 + 2 * 16**3)


def test_owner_loads_carry_across_exchange_groups():
    loads = [0.0, 0.0]
    assert assign_owners([3.0, 1.0], 2, loads) == [0, 1] and loads == [3.0, 1.0]
    assert assign_owners([2.0], 2, loads) == [1]  # the lighter rank so far, not rank 0 again


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    _single("--out", out, "--steps", 4)
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_world_size_2_matches_single_process(mode, single_run, tmp_path):
    _torchrun(2, "--mode", mode, "--out", tmp_path, "--steps", 4)
    assert _max_rel_diff(tmp_path, single_run) <= 1e-6


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_split_fused_phi3_at_world_2_matches_single_process(mode, tmp_path):
    """Fused qkv_proj / gate_up_proj split per block: owners (DDP) and row-sharded DTensors (FSDP2) split the
    gathered full matrix exactly as one process does."""
    _single("--out", tmp_path / "one", "--steps", 3, "--model", "phi3-split")
    _torchrun(2, "--mode", mode, "--out", tmp_path / "two", "--steps", 3, "--model", "phi3-split")
    assert _max_rel_diff(tmp_path / "two", tmp_path / "one") <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_world_size_4_matches_single_process(mode, single_run, tmp_path):
    _torchrun(4, "--mode", mode, "--out", tmp_path, "--steps", 4)
    assert _max_rel_diff(tmp_path, single_run) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_checkpoint_at_world_4_resumes_at_world_2(mode, tmp_path):
    ref = tmp_path / "ref"
    _single("--out", ref, "--steps", 6)
    ckpt = tmp_path / "ckpt"
    _torchrun(4, "--mode", mode, "--out", tmp_path / "first", "--steps", 3, "--save-every", 3, "--ckpt", ckpt)
    _torchrun(2, "--mode", mode, "--out", tmp_path / "second", "--steps", 6, "--resume", "--ckpt", ckpt)
    assert _max_rel_diff(tmp_path / "second", ref) <= 1e-6


def test_fp32_model_ddp_and_fsdp2_agree(tmp_path):
    """In fp32, DDP's gradient summation order differs from one process (~1e-7); both backends see the same."""
    _torchrun(2, "--mode", "ddp", "--out", tmp_path / "ddp", "--steps", 3, "--dtype", "float32")
    _torchrun(2, "--mode", "fsdp2", "--out", tmp_path / "fsdp2", "--steps", 3, "--dtype", "float32")
    assert _max_rel_diff(tmp_path / "ddp", tmp_path / "fsdp2") <= 1e-6


def test_fsdp1_flat_parameters_are_refused_at_creation():
    from torch.distributed.fsdp._flat_param import FlatParameter

    model = torch.nn.Module()
    model.register_parameter("_flat_param", FlatParameter(torch.zeros(64), requires_grad=True))
    with pytest.raises(ValueError, match="FSDP v1 FlatParameter.*FSDP2"):
        route(model)
    with pytest.raises(ValueError, match="flattened 2-D weight.*FSDP2"):
        Muon([model._flat_param])


def test_flat_view_swapped_in_after_creation_is_refused_at_first_step():
    lin = torch.nn.Linear(8, 8, bias=False)
    opt = Muon(param_groups(lin), lr=1e-3)
    flat = torch.nn.Parameter(lin.weight.detach().reshape(-1).clone())  # what a ZeRO partition looks like
    opt.param_groups[0]["params"][0] = flat
    flat.grad = torch.ones_like(flat)
    with pytest.raises(ValueError, match=r"became a flat 1-D view at step 1.*DeepSpeed's own Muon"):
        opt.step()


def test_distributed_mode_validation():
    with pytest.raises(ValueError, match="valid: auto, none"):
        Muon([torch.nn.Parameter(torch.zeros(4, 4))], distributed="zero3")
