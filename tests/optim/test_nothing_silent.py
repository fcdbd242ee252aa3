"""Nothing silent, nothing NaN (issue 26): all-zero updates under NorMuon/AdaMuon, ``variant_eps=0``, gradients
whose Frobenius norm overflows fp32, bf16 gradients that overflow the Nesterov mix, Adam moments that overflow,
non-finite state reaching orthogonalization, ``cautious_wd`` without decay, and QK-Clip with a non-finite max
logit. Each either stays finite and right, or raises naming the parameter and the stage with nothing written, or
(``nonfinite="skip"``) is counted and skipped."""

import copy
import warnings

import pytest
import torch
from conftest import tiny_llama

import hf_muon
from hf_muon import Muon


def _param(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.randn(*shape, generator=g).to(dtype))


def _state(opt):
    return {id(p): {k: v.clone() for k, v in st.items()} for p, st in opt.state.items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(
        a[k].keys() == b[k].keys() and all(torch.equal(a[k][j], b[k][j]) for j in a[k]) for k in a
    )


@pytest.mark.parametrize("variant", ["normuon", "adamuon"])
@pytest.mark.parametrize("shape", [(16, 32), (32, 16), (4, 4, 16)])
def test_an_all_zero_update_stays_finite_under_rms_matching(variant, shape):
    p = _param(shape)
    experts = len(shape) == 3
    opt = Muon([{"params": [p], "use_muon": True, "experts": experts}], lr=1e-3, variant=variant)
    w0 = p.detach().clone()
    p.grad = torch.zeros(shape)
    opt.step()
    assert torch.isfinite(p).all()
    assert torch.equal(p.detach(), w0 * (1 - 1e-3 * 0.1))  # decay only
    for v in opt.state[p].values():
        assert torch.isfinite(v).all()


def test_one_zero_expert_of_a_stack_stays_finite_and_the_others_move():
    p = _param((3, 16, 32))
    opt = Muon([{"params": [p], "use_muon": True, "experts": True}], lr=1e-2, variant="normuon", weight_decay=0.0)
    w0 = p.detach().clone()
    p.grad = torch.randn(3, 16, 32)
    p.grad[1] = 0
    opt.step()
    assert torch.isfinite(p).all()
    assert torch.equal(p[1].detach(), w0[1]) and not torch.equal(p[0].detach(), w0[0])


@pytest.mark.parametrize("where", ["config", "group"])
def test_variant_eps_zero_is_refused_naming_the_knob(where):
    p = _param((16, 32))
    with pytest.raises(ValueError, match=r"variant_eps=0.0 is out of range \(0"):
        if where == "config":
            hf_muon.MuonConfig(variant="normuon", variant_eps=0.0)
        else:
            Muon([{"params": [p], "use_muon": True, "variant_eps": 0.0}], lr=1e-3, variant="normuon")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("variant", ["muon", "normuon", "adamuon"])
def test_a_gradient_past_fp32s_squared_range_gives_the_update_of_its_scaled_copy(dtype, variant):
    """‖G‖_F ≈ 4e21 (fp32 squares overflow at 1.8e19): the update equals the one for G·2⁻⁶⁰, not zero."""
    g = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    updates = []
    for scale in (1.0, 2.0**60):
        p = _param((16, 32), dtype)
        w0 = p.detach().clone().float()
        opt = Muon(
            [{"params": [p], "use_muon": True}],
            lr=1e-2,
            weight_decay=0.0,
            variant=variant,
            ns_dtype="float32",
        )
        p.grad = (g * scale).to(dtype)
        opt.step()
        updates.append(p.detach().float() - w0)
    assert updates[1].abs().amax() > 0, "silent zero update"
    torch.testing.assert_close(updates[1], updates[0], rtol=0, atol=0)


def test_bf16_gradients_that_overflow_the_nesterov_mix_raise_naming_the_parameter_and_stage():
    p = _param((16, 32), torch.bfloat16)
    q = _param((16, 32), torch.bfloat16, seed=1)
    opt = Muon(
        [
            {"params": [q], "use_muon": True, "param_names": ["ok.weight"]},
            {"params": [p], "use_muon": True, "param_names": ["hot.weight"]},
        ],
        lr=1e-3,
    )
    q.grad = torch.randn(16, 32).bfloat16()
    p.grad = torch.randn(16, 32).bfloat16()
    opt.step()
    before, weights = _state(opt), [p.detach().clone(), q.detach().clone()]
    steps = [g["step"] for g in opt.param_groups]
    p.grad = (torch.randn(16, 32).sign() * 2e38).bfloat16()
    q.grad = torch.randn(16, 32).bfloat16()
    with pytest.raises(FloatingPointError, match=r"non-finite momentum .*'hot.weight'.*step 2.*nothing was updated"):
        opt.step()
    assert _same_state(before, _state(opt))
    assert torch.equal(weights[0], p.detach()) and torch.equal(weights[1], q.detach())
    assert [g["step"] for g in opt.param_groups] == steps


def test_bf16_nesterov_overflow_is_counted_and_skipped_under_skip():
    p, q = _param((16, 32), torch.bfloat16), _param((16, 32), torch.bfloat16, seed=1)
    opt = Muon([{"params": [p, q], "use_muon": True}], lr=1e-3, nonfinite="skip")
    p.grad = (torch.randn(16, 32).sign() * 2e38).bfloat16()
    q.grad = torch.randn(16, 32).bfloat16()
    w0, q0 = p.detach().clone(), q.detach().clone()
    opt.step()
    assert torch.equal(p.detach(), w0) and not torch.equal(q.detach(), q0)
    assert opt.param_groups[0]["nonfinite_skipped"] == 1 and opt.state[p] == {}
    assert torch.isfinite(q).all()


def test_fp32_momentum_takes_the_bf16_max_gradient_without_overflow():
    p = _param((16, 32), torch.bfloat16)
    opt = Muon([{"params": [p], "use_muon": True}], lr=1e-3, momentum_dtype="float32", momentum=0.5)
    p.grad = (torch.randn(16, 32).sign() * 2e37).bfloat16()
    opt.step()
    assert torch.isfinite(p).all() and torch.isfinite(opt.state[p]["momentum_buffer"]).all()


def test_adam_base_moments_that_overflow_raise_with_nothing_written():
    p = _param((16, 32))
    opt = Muon([{"params": [p], "use_muon": True, "param_names": ["w"]}], lr=1e-3, update_base="adam")
    p.grad = torch.full((16, 32), 1e20)  # over the guard's limit, but (1 − β2)·G² fits: checked, finite, applied
    w0 = p.detach().clone()
    opt.step()
    assert torch.isfinite(p).all() and not torch.equal(p.detach(), w0)
    opt = Muon([{"params": [p], "use_muon": True, "param_names": ["w"]}], lr=1e-3, update_base="adam")
    p.grad = torch.full((16, 32), 1e30)
    w0 = p.detach().clone()
    with pytest.raises(FloatingPointError, match=r"non-finite adam moments .*'w'.*nothing was updated"):
        opt.step()
    assert torch.equal(p.detach(), w0) and opt.state[p] == {} and opt.param_groups[0]["step"] == 0


def test_a_nonfinite_state_reaching_orthogonalize_is_named_and_no_weight_is_written():
    p = _param((16, 32))
    opt = Muon([{"params": [p], "use_muon": True, "param_names": ["layer.weight"]}], lr=1e-3)
    p.grad = torch.randn(16, 32)
    opt.step()
    opt.state[p]["momentum_buffer"][0, 0] = float("inf")  # e.g. loaded from a broken checkpoint
    w0 = p.detach().clone()
    with pytest.raises(FloatingPointError, match=r"orthogonalize for 'layer.weight'.*momentum_buffer.*no weight"):
        opt.step()
    assert torch.equal(p.detach(), w0)


def test_cautious_wd_without_weight_decay_warns():
    p = _param((16, 32))
    with pytest.warns(UserWarning, match=r"cautious_wd=True with weight_decay=0 changes nothing"):
        Muon([{"params": [p], "use_muon": True}], lr=1e-3, cautious_wd=True, weight_decay=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Muon([{"params": [p], "use_muon": True}], lr=1e-3, cautious_wd=True, weight_decay=0.1)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_qk_clip_with_a_nonfinite_max_logit_refuses_the_step(bad):
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, lr=1e-3, qk_clip=10.0)
    x = torch.randint(0, 128, (1, 16))
    model(input_ids=x, labels=x).loss.backward()
    opt.qk_clip.logits.values[1][2] = bad
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(FloatingPointError, match=r"qk_clip: attention module 'model.layers.1.self_attn' head 2"):
        opt.step()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_qk_clip_with_a_nonfinite_max_logit_is_counted_under_skip():
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, lr=1e-3, qk_clip=1e-6, nonfinite="skip")
    x = torch.randint(0, 128, (1, 16))
    model(input_ids=x, labels=x).loss.backward()
    opt.qk_clip.logits.values[0][1] = float("inf")
    opt.step()
    assert opt.qk_clip.last["qk_clip_heads_nonfinite"] == 1
    assert opt.qk_clip.last["qk_clip_heads_clipped"] == opt.qk_clip.last["qk_clip_heads"] - 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_adam_base_zero_gradient_of_a_low_precision_weight_stays_finite(dtype):
    """Found by the property tests (tests/property): Adam's ε = 1e-8 is 0 in fp16, so a zero gradient gave 0/0."""
    p = _param((1, 12), dtype)
    opt = Muon([{"params": [p], "use_muon": True}], lr=1e-2, update_base="adam", momentum=0.0)
    p.grad = torch.zeros(1, 12, dtype=dtype)
    opt.step()
    assert torch.isfinite(p).all()


@pytest.mark.parametrize("variant", ["muon", "normuon"])
def test_a_tiny_gradient_gets_the_update_of_its_scaled_copy(variant):
    """Found by the slow property profile: NS divided by max(‖G‖, 1e-7), so ‖G‖_F < 1e-7 gave a smaller (at 1e-30:
    zero) update than G·2^k. The floor is now the smallest normal number: the step is scale-free."""
    g = torch.randn(1, 12, generator=torch.Generator().manual_seed(0))
    updates = []
    for scale in (1.0, 2.0**-100):
        p = _param((1, 12))
        w0 = p.detach().clone()
        opt = Muon(
            [{"params": [p], "use_muon": True}],
            lr=1e-2,
            weight_decay=0.0,
            variant=variant,
            ns_dtype="float32",
        )
        p.grad = g * scale
        opt.step()
        updates.append(p.detach() - w0)
    torch.testing.assert_close(updates[1], updates[0], rtol=0, atol=0)
