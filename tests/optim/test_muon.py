"""hf_muon.Muon: AdamW groups bit-equal to torch, Muon groups equal to the float64 reference, no-op at
lr = 0, checkpoint round trips, batching, non-finite handling, validation."""

import copy
import io
from unittest import mock

import pytest
import torch
from conftest import weights_only_resume

import hf_muon
from hf_muon import Muon
from hf_muon.optim.reference import reference_muon_step


def _params(specs, dtype=torch.float32):
    return [torch.nn.Parameter(torch.randn(*s, dtype=dtype)) for s in specs]


def _grads_like(params, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


# hf_muon's default (fused=None) takes torch's fused kernel on CPU; fused=False is torch's default path.
@pytest.mark.parametrize(
    "ours,theirs",
    [(dict(), dict(fused=True)), (dict(fused=False), dict()), (dict(foreach=True), dict(foreach=True))],
    ids=["auto-fused", "unfused", "foreach"],
)
def test_adamw_groups_are_bit_identical_to_torch_adamw(ours, theirs):
    muon_w = _params([(16, 8)])
    adam = _params([(8,), (32, 8), (5,)])
    adam_ref = [torch.nn.Parameter(p.detach().clone()) for p in adam]
    opt = Muon(
        [
            dict(params=muon_w),
            dict(params=adam[:2], use_muon=False, weight_decay=0.05),
            dict(params=adam[2:], use_muon=False, weight_decay=0.0),
        ],
        lr=3e-3,
        betas=(0.9, 0.95),
        eps=1e-7,
        **ours,
    )
    ref = torch.optim.AdamW(
        [dict(params=adam_ref[:2], weight_decay=0.05), dict(params=adam_ref[2:], weight_decay=0.0)],
        lr=3e-3,
        betas=(0.9, 0.95),
        eps=1e-7,
        **theirs,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    sched_ref = torch.optim.lr_scheduler.LambdaLR(ref, lambda s: 1.0 / (1 + s))
    for step in range(6):
        for p, g in zip(muon_w + adam, _grads_like(muon_w + adam, step)):
            p.grad = g
        for p, g in zip(adam_ref, _grads_like(muon_w + adam, step)[1:]):
            p.grad = g
        opt.step(), ref.step(), sched.step(), sched_ref.step()
    for p, q in zip(adam, adam_ref):
        assert torch.equal(p, q)
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][k], ref.state[q][k])


def test_fused_adamw_resumes_from_a_weights_only_checkpoint_like_torch():
    """The fused default through a weights_only save/load equals torch's fused AdamW run uninterrupted; an
    unfused checkpoint keeps its own setting on load (the saved group wins, as in torch)."""
    adam = _params([(32, 8), (8,)])
    muon_w = _params([(16, 8)])
    ref_p = [torch.nn.Parameter(p.detach().clone()) for p in adam]
    ref = torch.optim.AdamW(ref_p, lr=1e-2, weight_decay=0.1, fused=True)

    def groups():
        return [dict(params=muon_w), dict(params=adam, use_muon=False)]

    opt = Muon(groups(), lr=1e-2)
    for step in range(5):
        if step == 3:
            buf = io.BytesIO()
            torch.save(opt.state_dict(), buf)
            buf.seek(0)
            opt = Muon(groups(), lr=1e-2)
            opt.load_state_dict(torch.load(buf, weights_only=True))
        grads = _grads_like(muon_w + adam, step)
        for p, g in zip(muon_w + adam, grads):
            p.grad = g
        for p, g in zip(ref_p, grads[1:]):
            p.grad = g
        opt.step(), ref.step()
    for p, q in zip(adam, ref_p):
        assert torch.equal(p, q)
        assert float(opt.state[p]["step"]) == 5.0
    unfused = Muon(groups(), lr=1e-2, fused=False)
    unfused.step()
    resumed = Muon(groups(), lr=1e-2)
    resumed.load_state_dict(unfused.state_dict())
    assert resumed.param_groups[1]["fused"] is False


def test_fused_and_foreach_together_is_an_error():
    with pytest.raises(ValueError, match="fused=True and foreach=True"):
        Muon([dict(params=_params([(4,)]), use_muon=False)], fused=True, foreach=True)


@pytest.mark.parametrize("scale_mode", ["moonlight", "keller", "mup", "none"])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("coefficients", ["keller", "polar_express"])
def test_muon_update_matches_float64_reference(scale_mode, nesterov, coefficients):
    shapes = [(24, 40), (40, 24), (24, 40), (7, 7)]
    params = _params(shapes, dtype=torch.float64)
    start = [p.detach().clone() for p in params]
    kw = dict(
        lr=0.02,
        weight_decay=0.1,
        momentum=0.9,
        nesterov=nesterov,
        ns_steps=5,
        coefficients=coefficients,
        scale_mode=scale_mode,
    )
    opt = Muon(params, **kw)
    ref_w, ref_b = start, [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for step in range(3):
        grads = _grads_like(params, step)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        out = [reference_muon_step(w, g, b, **kw) for w, g, b in zip(ref_w, grads, ref_b)]
        ref_w, ref_b = [o[0] for o in out], [o[1] for o in out]
    for p, w, b in zip(params, ref_w, ref_b):
        assert torch.allclose(p.detach(), w, rtol=0, atol=1e-10)
        assert torch.allclose(opt.state[p]["momentum_buffer"], b, atol=1e-12)


def test_fp32_muon_matches_reference_to_fp32_precision():
    params = _params([(64, 32), (32, 96)])
    kw = dict(lr=1e-2, weight_decay=0.1, ns_steps=5, coefficients="polar_express")
    opt = Muon(params, ns_dtype="float32", **kw)
    grads = _grads_like(params, 1)
    for p, g in zip(params, grads):
        p.grad = g
    before = [p.detach().clone() for p in params]
    opt.step()
    for p, w0, g in zip(params, before, grads):
        w, _ = reference_muon_step(w0, g, torch.zeros_like(w0), **kw)
        assert (p.detach().double() - w).abs().max() < 1e-6


@pytest.mark.parametrize("layout", ["conv1d", "experts", "experts_t", "conv"])
def test_layouts_match_reference(layout):
    if layout == "conv1d":
        shape, group = (12, 40), dict(transposed=True)  # GPT-2 Conv1D (in, out)
    elif layout == "experts":
        shape, group = (3, 20, 8), dict(experts=True)
    elif layout == "experts_t":
        shape, group = (3, 8, 20), dict(experts=True, transposed=True)
    else:
        shape, group = (6, 3, 3, 3), dict()
    (p,) = _params([shape], dtype=torch.float64)
    w0 = p.detach().clone()
    kw = dict(lr=0.05, weight_decay=0.0, scale_mode="keller", coefficients="keller")
    opt = Muon([dict(params=[p], **group)], **kw)
    p.grad = _grads_like([p], 3)[0]
    opt.step()
    w, _ = reference_muon_step(w0, p.grad, torch.zeros_like(w0), **kw, **group)
    assert torch.allclose(p.detach(), w, atol=1e-10)


def test_orientation_of_scale_modes():
    lin = torch.nn.Parameter(torch.zeros(64, 16))  # nn.Linear (out=64, in=16)
    c1d = torch.nn.Parameter(torch.zeros(16, 64))  # Conv1D (in=16, out=64): same map
    g_lin, g_c1d = (
        dict(transposed=False, experts=False, scale_mode="keller"),
        dict(transposed=True, experts=False, scale_mode="keller"),
    )
    assert Muon.update_scale(lin, g_lin) == Muon.update_scale(c1d, g_c1d) == 2.0  # sqrt(max(1, 64/16))
    assert Muon.update_scale(c1d, dict(g_lin)) == 1.0  # read as (out=16, in=64) it would be 1
    assert Muon.update_scale(lin, dict(g_lin, scale_mode="mup")) == 2.0
    assert Muon.update_scale(torch.zeros(16, 64), dict(g_lin, scale_mode="mup")) == 0.5
    assert Muon.update_scale(lin, dict(g_lin, scale_mode="moonlight")) == pytest.approx(0.2 * 8)


def test_lr_zero_step_leaves_every_weight_unchanged():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    groups = [
        dict(params=[model[0].weight, model[1].weight]),
        dict(params=[model[0].bias, model[1].bias], use_muon=False),
    ]
    opt = Muon(groups, lr=0.0, weight_decay=0.1)
    before = copy.deepcopy(model.state_dict())
    for _ in range(3):
        model(torch.randn(4, 8)).sum().backward()
        opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(opt.state[p] for p in model.parameters())  # state still advanced (DCP's fake step relies on it)


def _train(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 8, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def test_state_dict_round_trip_with_weights_only_and_exact_resume():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))

    def make(m):
        return Muon(
            [
                dict(params=[m[0].weight, m[2].weight], param_names=["0.weight", "2.weight"]),
                dict(params=[m[0].bias, m[2].bias], param_names=["0.bias", "2.bias"], use_muon=False, lr=1e-2),
            ],
            lr=2e-2,
            coefficients=[(3.4445, -4.775, 2.0315)],
        )

    opt = make(model)
    _train(model, opt, 3)
    model2, opt2 = weights_only_resume(model, opt, make)
    _train(model, opt, 4, seed=5)
    _train(model2, opt2, 4, seed=5)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    # an empty state_dict must round-trip too (AcceleratedOptimizer does this at wrap time)
    fresh = make(copy.deepcopy(model))
    fresh.load_state_dict(fresh.state_dict())


def test_state_is_one_buffer_per_muon_param_and_fp32_momentum_for_bf16():
    w32 = _params([(16, 8)])
    wbf = [torch.nn.Parameter(torch.randn(16, 8).bfloat16())]
    opt = Muon([dict(params=w32), dict(params=wbf, momentum_dtype="float32")], lr=1e-3)
    for p in w32 + wbf:
        p.grad = torch.randn_like(p)
    opt.step()
    assert set(opt.state[w32[0]]) == {"momentum_buffer"}
    assert opt.state[w32[0]]["momentum_buffer"].dtype == torch.float32
    assert opt.state[wbf[0]]["momentum_buffer"].dtype == torch.float32
    assert wbf[0].dtype == torch.bfloat16


def test_same_shape_matrices_are_orthogonalized_in_one_batched_call():
    params = _params([(16, 32)] * 3 + [(32, 16)] * 2 + [(8, 8)])
    for p in params:
        p.grad = torch.randn_like(p)
    snap = [p.detach().clone() for p in params]
    import hf_muon.ns.batching as batching

    with mock.patch.object(batching, "_run_stack", wraps=batching._run_stack) as spy:
        Muon(params, lr=1e-2, ns_dtype="float32").step()
    assert spy.call_count == 2  # (16,32)x3 + transposed (32,16)x2 -> one call; (8,8) -> one call
    assert [tuple(w.shape) for w in spy.call_args_list[0].args[0]] == [(1, 16, 32)] * 5
    batched = [p.detach().clone() for p in params]
    for p, s in zip(params, snap):
        p.data.copy_(s)
    Muon(params, lr=1e-2, batched=False, ns_dtype="float32").step()
    for p, b in zip(params, batched):
        assert torch.allclose(p, b, atol=1e-6)


def test_cpu_buckets_are_cut_to_the_cache_budget_with_the_same_result():
    """A bucket larger than stack_limit runs as several stacks of at most that many bytes (a piece larger than the
    limit alone); the update equals the uncut one."""
    import hf_muon.ns.batching as batching

    assert batching.cut([1, 1, 1, 1, 1], 10, 25) == [[0, 1], [2, 3], [4]]
    assert batching.cut([3, 1, 1], 10, 25) == [[0], [1, 2]]  # 30 bytes > 25: alone
    assert batching.cut([1, 1], 10, None) == [[0, 1]]
    assert batching.stack_limit(torch.device("cpu")) == batching.CACHE_FRACTION * batching.last_level_cache_bytes()
    assert batching.stack_limit(torch.device("meta")) is None
    params = _params([(16, 32)] * 3 + [(32, 16)] * 2)
    for p in params:
        p.grad = torch.randn_like(p)
    snap = [p.detach().clone() for p in params]
    with (
        mock.patch.object(batching, "stack_limit", return_value=2 * 16 * 32 * 4),
        mock.patch.object(batching, "_run_stack", wraps=batching._run_stack) as spy,
    ):
        Muon(params, lr=1e-2, ns_dtype="float32").step()
    assert [sum(w.size(0) for w in c.args[0]) for c in spy.call_args_list] == [2, 2, 1]
    cut = [p.detach().clone() for p in params]
    for p, s in zip(params, snap):
        p.data.copy_(s)
    Muon(params, lr=1e-2, ns_dtype="float32").step()  # this machine's budget: one stack of 5
    for p, c in zip(params, cut):
        torch.testing.assert_close(p, c, rtol=0, atol=1e-6)


def test_groups_with_different_lrs_and_settings_share_batches_only_when_compatible():
    a, b, c = _params([(16, 32)] * 3)
    for p in (a, b, c):
        p.grad = torch.randn_like(p)
    import hf_muon.ns.batching as batching

    opt = Muon([dict(params=[a], lr=1e-2), dict(params=[b], lr=1e-3), dict(params=[c], ns_steps=7)], lr=1e-3)
    with mock.patch.object(batching, "_run_stack", wraps=batching._run_stack) as spy:
        opt.step()
    assert spy.call_count == 2  # a and b batch together; c has a different ns_steps


def test_nesterov_directions_kept_in_scratch_do_not_collide_across_groups():
    """Two Muon groups of the same shapes in one optimizer step like two optimizers of one group each: every
    direction has its own scratch slot until Newton-Schulz has read it (and the scratch path equals fresh tensors)."""
    from hf_muon.ns import workspace

    a, b = _params([(16, 32), (16, 32)])
    ref = [p.detach().clone().requires_grad_() for p in (a, b)]
    fresh = [p.detach().clone().requires_grad_() for p in (a, b)]
    one = Muon([dict(params=[a]), dict(params=[b], lr=5e-2)], lr=2e-2, ns_dtype="float32")
    two = [Muon([ref[0]], lr=2e-2, ns_dtype="float32"), Muon([ref[1]], lr=5e-2, ns_dtype="float32")]
    plain = Muon([dict(params=[fresh[0]]), dict(params=[fresh[1]], lr=5e-2)], lr=2e-2, ns_dtype="float32")
    for _ in range(3):
        grads = [torch.randn(16, 32), torch.randn(16, 32) * 10]
        for ps in ((a, b), ref, fresh):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
        one.step()
        for opt in two:
            opt.step()
        with workspace.disabled():
            plain.step()
        for p, r, f in zip((a, b), ref, fresh):
            assert torch.equal(p, r) and torch.equal(p, f)


def test_nonfinite_gradient_error_names_parameter_and_step():
    params = _params([(4, 4), (4, 4)])
    opt = Muon([dict(params=params, param_names=["layer.q.weight", "layer.k.weight"])], lr=1e-3)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    params[1].grad[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"'layer.k.weight'.*step 2"):
        opt.step()


def test_nonfinite_skip_policy_skips_and_counts():
    params = _params([(4, 4), (4, 4)])
    opt = Muon(params, lr=1e-2, nonfinite="skip")
    params[0].grad = torch.randn(4, 4)
    params[1].grad = torch.full((4, 4), float("inf"))
    before = [p.detach().clone() for p in params]
    opt.step()
    assert not torch.equal(params[0], before[0])
    assert torch.equal(params[1], before[1]) and "momentum_buffer" not in opt.state[params[1]]
    assert opt.param_groups[0]["nonfinite_skipped"] == 1


def test_validation_errors_name_the_culprit():
    with pytest.raises(ValueError, match="valid: moonlight, keller, mup, none"):
        Muon(_params([(4, 4)]), scale_mode="spectral")
    with pytest.raises(ValueError, match=r"'norm.weight' \(shape \(4,\)\) is 1-D"):
        Muon(
            [
                dict(params=_params([(4,)]), param_names=["norm.weight"]),
                dict(params=_params([(4, 4)]), param_names=["q.weight"]),
            ]
        )
    with pytest.raises(ValueError, match="FSDP v1 FlatParameter or a DeepSpeed"):
        Muon(_params([(4,)]))
    with pytest.raises(ValueError, match="no parameter is routed to it"):
        Muon([dict(params=_params([(4,)]), use_muon=False)])
    with pytest.raises(ValueError, match="valid: error, skip"):
        Muon(_params([(4, 4)]), nonfinite="ignore")
    with pytest.raises(ValueError, match="valid: auto"):
        Muon(_params([(4, 4)]), ns_dtype="int4")


def test_lr_sanity_warnings_and_conversion():
    with pytest.warns(UserWarning, match="looks AdamW-sized"):
        Muon(_params([(4, 4)]), lr=1e-4, scale_mode="keller")
    with pytest.warns(UserWarning, match="expects AdamW-sized"):
        Muon(_params([(4, 4)]), lr=0.1, scale_mode="moonlight")
    # converting moonlight lr 1e-3 to keller for a square 1024 matrix: x 0.2*sqrt(1024) = 6.4
    assert hf_muon.convert_lr(1e-3, (1024, 1024), "moonlight", "keller") == pytest.approx(6.4e-3)
    assert hf_muon.convert_lr(6.4e-3, (1024, 1024), "keller", "moonlight") == pytest.approx(1e-3)


def test_adamw_lr_default_and_describe():
    w, b = _params([(8, 4)]), _params([(4,)])
    opt = Muon([dict(params=w), dict(params=b, use_muon=False)], lr=2e-3, adamw_lr=5e-4)
    rows = opt.describe()
    assert rows[0]["kind"] == "muon" and rows[0]["lr"] == 2e-3
    assert rows[1]["kind"] == "adamw" and rows[1]["lr"] == 5e-4
    assert rows[0]["effective_lr"][0] == pytest.approx(2e-3 * 0.2 * 8**0.5)


def test_groups_added_later_are_validated_too():
    opt = Muon(_params([(4, 4)]), lr=1e-3)
    with pytest.raises(ValueError, match="valid: moonlight"):
        opt.add_param_group(dict(params=_params([(4, 4)]), scale_mode="bogus"))
    opt.add_param_group(dict(params=_params([(3,)]), use_muon=False, lr=1e-2))
    assert opt.param_groups[-1]["use_muon"] is False
