"""Property-based tests (hypothesis) over one optimizer step (issue 26).

Drawn: the weight's shape (1×n, n×1, square, tall, wide, a 3-D expert stack, a fused QKV split head by head),
its dtype (fp32, bf16, fp16; fp32 momentum or the parameter's), every ``variant`` × ``update_base`` ×
``spectral_power`` × ``cautious_wd`` combination the config accepts, and the gradient's pattern (random, zeros,
one zero row / column, rank 1, tiny 1e-30, huge 1e30, the dtype's max, one NaN or inf element). Properties:

1. the weights stay finite, or the step raises with nothing written (weights, state, counters);
2. an all-zero gradient with momentum 0 changes the weights only by the decay;
3. the update is invariant to scaling the gradient by 2^k (orthogonalizing rules, within the dtype);
4. lr = 0 leaves the weights bit-identical (a step refused for an overflowing state writes nothing either);
5. the state round-trips through ``state_dict`` bit-identically (the next step agrees exactly).

Each property runs twice: in the default suite with the active hypothesis profile (30 examples; ``HF_MUON_HYPOTHESIS``
selects another, tests/conftest.py) and as a ``slow`` test with 400 examples.
"""

import copy

import pytest
import torch

pytest.importorskip("hypothesis")
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st

from hf_muon import Muon  # noqa: E402

SHAPES = [(1, 12), (12, 1), (8, 8), (24, 8), (8, 24), (3, 8, 12), (48, 16)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SLOW_EXAMPLES = 400
PATTERNS = ["random", "zeros", "zero_row", "zero_col", "rank1", "tiny", "huge", "dtype_max", "nan", "inf"]


@st.composite
def setups(draw):
    shape = draw(st.sampled_from(SHAPES))
    variant = draw(st.sampled_from(["muon", "normuon", "adamuon"]))
    base = "momentum" if variant != "muon" else draw(st.sampled_from(["momentum", "adam"]))
    power = 0.0 if variant != "muon" else draw(st.sampled_from([0.0, 0.5]))
    group = dict(use_muon=True, experts=len(shape) == 3)
    if shape == (48, 16):  # fused QKV, 12 heads of 4 rows
        group["split"] = {"axis": -2, "sizes": [4] * 12, "groups": 1, "label": "per-head"}
    knobs = dict(
        variant=variant,
        update_base=base,
        spectral_power=power,
        cautious_wd=draw(st.booleans()),
        momentum_dtype=draw(st.sampled_from([None, "float32"])),
        weight_decay=0.1,
        lr=1e-2,
        nonfinite=draw(st.sampled_from(["error", "skip"])),
        ns_dtype="float32",
    )
    return shape, draw(st.sampled_from(DTYPES)), group, knobs, draw(st.integers(0, 2**16))


def _grad(shape, dtype, pattern, seed):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    if pattern == "zeros":
        g.zero_()
    elif pattern == "zero_row":
        g[..., 0, :] = 0
    elif pattern == "zero_col":
        g[..., :, 0] = 0
    elif pattern == "rank1":
        g = g[..., :, :1] * g[..., :1, :]
    elif pattern == "tiny":
        g = g * 1e-30
    elif pattern == "huge":
        g = g * 1e30
    elif pattern == "dtype_max":
        g = g.sign() * torch.finfo(dtype).max
    g = g.to(dtype)
    if pattern in ("nan", "inf"):
        g.view(-1)[g.numel() // 2] = float(pattern)
    return g


def _fast_and_slow(body, *strategies):
    """The property as a default-suite test (the active profile's examples) and as a ``slow`` test with
    SLOW_EXAMPLES, so ``make test-slow`` searches harder without an environment variable."""
    fast = given(*strategies)(body)
    slow = pytest.mark.slow(settings(max_examples=SLOW_EXAMPLES)(given(*strategies)(body)))
    return fast, slow


def _snapshot(opt, p):
    return (
        p.detach().clone(),
        {k: v.clone() for k, v in opt.state[p].items()},
        [(g["step"], g["nonfinite_skipped"]) for g in opt.param_groups],
    )


def _equal(a, b):
    return (
        torch.equal(a[0], b[0])
        and a[1].keys() == b[1].keys()
        and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
        and a[2] == b[2]
    )


def _make(shape, dtype, group, knobs, seed):
    p = torch.nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1)).to(dtype))
    opt = Muon([dict(group, params=[p])], **knobs)
    return p, opt


def _weights_stay_finite_or_the_step_raises_with_nothing_written(setup, pattern):
    shape, dtype, group, knobs, seed = setup
    p, opt = _make(shape, dtype, group, knobs, seed)
    p.grad = _grad(shape, dtype, "random", seed)
    opt.step()  # a state to protect
    p.grad = _grad(shape, dtype, pattern, seed + 2)
    before = _snapshot(opt, p)
    try:
        opt.step()
    except FloatingPointError:
        assert _equal(before, _snapshot(opt, p)), "a refused step wrote something"
        return
    assert torch.isfinite(p).all()
    for v in opt.state[p].values():
        assert torch.isfinite(v).all()
    if opt.param_groups[0]["nonfinite_skipped"]:
        assert torch.equal(before[0], p.detach()) and all(torch.equal(before[1][k], opt.state[p][k]) for k in before[1])


def _a_zero_gradient_with_momentum_zero_changes_weights_only_by_decay(setup):
    shape, dtype, group, knobs, seed = setup
    p, opt = _make(shape, dtype, group, dict(knobs, momentum=0.0, cautious_wd=False), seed)
    w0 = p.detach().clone()
    p.grad = torch.zeros(shape, dtype=dtype)
    opt.step()
    torch._foreach_mul_([w0], 1 - 1e-2 * 0.1)  # the decay as the optimizer computes it (fp16 rounds the factor)
    assert torch.equal(p.detach(), w0)


def _the_update_is_invariant_to_scaling_the_gradient_by_a_power_of_two(setup, k):
    shape, dtype, group, knobs, seed = setup
    assume(knobs["update_base"] == "momentum" and knobs["spectral_power"] == 0.0)
    g = _grad(shape, torch.float32, "random", seed)
    assume(torch.isfinite((g * 2.0**k).to(dtype)).all() and ((g * 2.0**k).to(dtype) != 0).any())
    updates = []
    for scale in (1.0, 2.0**k):
        p, opt = _make(shape, dtype, group, dict(knobs, nonfinite="error"), seed)
        w0 = p.detach().clone()
        p.grad = (g * scale).to(dtype)
        if dtype != torch.float32 and not torch.equal((g * scale).to(dtype).float() / scale, g.to(dtype).float()):
            return  # the scaled gradient rounds differently in this dtype (subnormals): not the same input
        try:
            opt.step()
        except FloatingPointError:  # 2^k·G overflows a fp16 state: refused, nothing written (the first property)
            assume(False)
        updates.append(p.detach().float() - w0.float())
    torch.testing.assert_close(updates[1], updates[0], rtol=0, atol=0)


def _lr_zero_is_a_no_op(setup, pattern):
    shape, dtype, group, knobs, seed = setup
    p, opt = _make(shape, dtype, group, dict(knobs, lr=0.0), seed)
    w0 = p.detach().clone()
    p.grad = _grad(shape, dtype, pattern, seed)
    assume(torch.isfinite(p.grad).all())  # huge in fp16 is inf: the screen's case, not this property's
    try:
        opt.step()
    except FloatingPointError:  # a state overflow is refused at lr = 0 too (found by the slow profile), unwritten
        pass
    assert torch.equal(p.detach(), w0)


def _the_state_round_trips_bit_identically(setup):
    shape, dtype, group, knobs, seed = setup
    p, opt = _make(shape, dtype, group, knobs, seed)
    for s in range(2):
        p.grad = _grad(shape, dtype, "random", seed + s)
        opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    twin = Muon([dict(group, params=[q])], **knobs)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    for k, v in opt.state[p].items():
        assert torch.equal(v, twin.state[q][k]) and v.dtype == twin.state[q][k].dtype, k
    g = _grad(shape, dtype, "random", seed + 9)
    p.grad, q.grad = g, g.clone()
    opt.step()
    twin.step()
    assert torch.equal(p.detach(), q.detach())


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


(
    test_weights_stay_finite_or_the_step_raises_with_nothing_written,
    test_weights_stay_finite_or_the_step_raises_with_nothing_written_slow,
) = _fast_and_slow(_weights_stay_finite_or_the_step_raises_with_nothing_written, setups(), st.sampled_from(PATTERNS))

(
    test_a_zero_gradient_with_momentum_zero_changes_weights_only_by_decay,
    test_a_zero_gradient_with_momentum_zero_changes_weights_only_by_decay_slow,
) = _fast_and_slow(_a_zero_gradient_with_momentum_zero_changes_weights_only_by_decay, setups())

(
    test_the_update_is_invariant_to_scaling_the_gradient_by_a_power_of_two,
    test_the_update_is_invariant_to_scaling_the_gradient_by_a_power_of_two_slow,
) = _fast_and_slow(_the_update_is_invariant_to_scaling_the_gradient_by_a_power_of_two, setups(), st.integers(-30, 30))

test_lr_zero_is_a_no_op, test_lr_zero_is_a_no_op_slow = _fast_and_slow(
    _lr_zero_is_a_no_op, setups(), st.sampled_from(PATTERNS[:7])
)

test_the_state_round_trips_bit_identically, test_the_state_round_trips_bit_identically_slow = _fast_and_slow(
    _the_state_round_trips_bit_identically, setups()
)
