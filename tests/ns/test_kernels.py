"""Compiled elementwise kernels (hf_muon.ns.kernels): equal to the eager ops to fp32 rounding, used only where the
policy says, and a failing compiler falls back to the eager ops with one warning."""

import warnings

import pytest
import torch

import hf_muon
from hf_muon.ns import kernels as K
from hf_muon.ns.batching import Job, NSConfig, run_jobs

ROWS, COLS = 1024, 256  # 262,144 elements = MIN_NUMEL


def _ulps_apart(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a − b| in units of the last place of ``b``'s dtype at ``b``."""
    mant = {torch.bfloat16: 7, torch.float32: 23}[b.dtype]
    b32 = b.float()
    ulp = torch.ldexp(torch.ones_like(b32), torch.frexp(b32.abs().clamp_min(1e-30)).exponent - 1 - mant)
    return (a.float() - b32).abs() / ulp


@pytest.fixture
def fresh_kernels(monkeypatch):
    monkeypatch.setattr(K, "_compiled", {})
    monkeypatch.setattr(K, "_broken", {})
    monkeypatch.setattr(K, "_probed", [])


def test_policy():
    big, small = torch.zeros(ROWS, COLS), torch.zeros(ROWS, COLS - 1)
    assert K.MIN_NUMEL == ROWS * COLS
    assert K.eligible(big, "auto") and K.eligible(big.mT, "auto")
    assert not K.eligible(small, "auto") and not K.eligible(big, "eager")
    assert not K.eligible(torch.zeros(8, 256, 256), "auto")  # an expert stack of small matrices stays eager
    assert not K.eligible(torch.zeros(ROWS, COLS, device="meta"), "auto")  # only CPU compiles
    assert K.one_pass_write(big, "auto") and not K.one_pass_write(big.bfloat16(), "auto")  # fp32 weights only
    with pytest.raises(ValueError, match="unknown kernels mode 'fast'; valid: auto, eager"):
        K.eligible(big, "fast")
    with pytest.raises(ValueError, match="kernels='fast'"):
        hf_muon.MuonConfig(kernels="fast")


@pytest.mark.parametrize("tall", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_compiled_cast_equals_eager(tall, dtype):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(1, COLS, ROWS, generator=g).mT if tall else torch.randn(1, ROWS, COLS, generator=g)
    norm = torch.linalg.vector_norm(src, dim=(-2, -1), keepdim=True) * 1.01
    out = torch.empty(src.shape, dtype=dtype)
    K.scaled_cast_(out, src, norm)
    assert "cast" in K._compiled and not K.broken()
    ref = (src / norm).to(dtype)
    assert _ulps_apart(out, ref).max() <= 1  # the fp32 quotient rounded once: at most the last place apart


@pytest.mark.parametrize("tall", [False, True])
@pytest.mark.parametrize("o_dtype", [torch.bfloat16, torch.float32])
def test_compiled_write_equals_eager(tall, o_dtype):
    g = torch.Generator().manual_seed(1)
    p = torch.nn.Parameter(torch.randn(ROWS, COLS, generator=g))
    o = (torch.randn(COLS, ROWS, generator=g).mT if tall else torch.randn(ROWS, COLS, generator=g)).to(o_dtype)
    ref = p.detach().clone()
    ref.mul_(1 - 1e-4).add_(o, alpha=-3e-3)  # the two eager passes
    # one rounding (or an fma) where eager rounds twice: apart by at most the rounding of the two terms
    bound = 2 * torch.finfo(torch.float32).eps * (p.detach().abs() + 3e-3 * o.float().abs())
    with torch.no_grad():
        K.decay_add_(p, o, 1 - 1e-4, -3e-3)
    assert "write" in K._compiled and not K.broken()
    assert ((p.detach() - ref).abs() <= bound).all()


def test_optimizer_steps_agree_with_eager_kernels(monkeypatch):
    """Each of several Muon steps with compiled kernels (tall, wide, a falling lr) equals the eager optimizer's step
    from the same weights, state and gradients to fp32 rounding, and the lr changes do not recompile. (The two are
    re-synchronised after every step: bf16 Newton-Schulz of low-rank gradients amplifies last-place differences, so
    free-running trajectories part within two steps whichever is right.)"""
    import copy

    torch.manual_seed(0)
    base = torch.nn.Sequential(
        torch.nn.Linear(COLS, ROWS, bias=False), torch.nn.Linear(ROWS, COLS, bias=False), torch.nn.Linear(COLS, 8)
    )
    models = [base, copy.deepcopy(base)]
    opts = [hf_muon.Muon(hf_muon.param_groups(m), lr=0.02, kernels=k) for m, k in zip(models, ("auto", "eager"))]
    for step in range(4):
        if step == 1:  # every layout compiled in step 0; a recompile now would fail and mark the kernel broken
            stance = torch.compiler.set_stance("fail_on_recompile")
            stance.__enter__()
        x = torch.randn(16, COLS)
        models[1](x).square().mean().backward()
        for a, b in zip(models[0].parameters(), models[1].parameters()):
            a.grad = b.grad.clone()
        for opt in opts:
            opt.step()
            for gr in opt.param_groups:
                gr["lr"] *= 0.7
        for a, b in zip(models[0].parameters(), models[1].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
            with torch.no_grad():
                a.copy_(b)
            for key, t in opts[1].state[b].items():
                opts[0].state[a][key].copy_(t)
        models[1].zero_grad()
    stance.__exit__(None, None, None)
    assert {"cast", "write"} <= set(K._compiled) and not K.broken()


def test_run_jobs_with_compiled_cast_matches_eager():
    g = torch.Generator().manual_seed(2)
    mats = [torch.randn(ROWS, COLS, generator=g), torch.randn(COLS, ROWS, generator=g)]
    auto = run_jobs([Job(t, NSConfig(5, "polar_express", "bfloat16", "newton_schulz")) for t in mats])
    eager = run_jobs([Job(t, NSConfig(5, "polar_express", "bfloat16", "newton_schulz", kernels="eager")) for t in mats])
    for a, e in zip(auto, eager):
        assert (a.float() - e.float()).abs().max() <= 2**-7  # bf16 NS: a last-place difference of X₀ at most


def test_failing_compiler_falls_back_to_eager_once(fresh_kernels, monkeypatch):
    def broken_compile(fn, **kw):
        def call(*a):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    src = torch.randn(ROWS, COLS)
    out = torch.empty(ROWS, COLS, dtype=torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="torch.compile of the 'cast' kernel failed.*No working C\\+\\+ compiler"):
        K.scaled_cast_(out, src, torch.tensor(3.0))
    assert torch.equal(out, (src / 3.0).bfloat16())
    assert set(K.broken()) == {"cast"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later calls are eager without a word
        K.scaled_cast_(out, src * 2, torch.tensor(3.0))
    assert torch.equal(out, (src * 2 / 3.0).bfloat16())


def test_optimizer_probes_the_compiler_before_writing(fresh_kernels, monkeypatch):
    """A compiler that does not work is found at the first step before anything is written: with warnings as
    errors that step raises and leaves weights and state as they were; otherwise it warns once and runs eager."""

    def broken_compile(fn, **kw):
        def call(*a):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    w = torch.nn.Parameter(torch.randn(ROWS, COLS))
    w.grad = torch.randn(ROWS, COLS)
    ref = torch.nn.Parameter(w.detach().clone())
    ref.grad = w.grad.clone()
    opt = hf_muon.Muon([w], lr=0.02)
    before = w.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="'cast' and 'write' kernel failed.*No working C\\+\\+ compiler"):
            opt.step()
    assert torch.equal(w, before) and not opt.state[w] and opt.param_groups[0]["step"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()  # warned once already; now eager without a word
    hf_muon.Muon([ref], lr=0.02, kernels="eager").step()
    assert torch.equal(w, ref) and set(K.broken()) == {"cast", "write"}


def test_callers_error_propagates_and_does_not_disable_compiling(fresh_kernels):
    src = torch.randn(ROWS, COLS)
    out = torch.empty(ROWS, COLS, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="must match the size"):
        K.scaled_cast_(out, src, torch.ones(7))  # a norm that does not broadcast: eager raises the same
    assert not K.broken()


def test_eager_mode_never_compiles(fresh_kernels, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("kernels='eager' compiled"))
    p = torch.randn(ROWS, COLS)
    o = torch.randn(COLS, ROWS).bfloat16().mT
    ref = p.clone().mul_(0.5).add_(o, alpha=2.0)
    K.decay_add_(p, o, 0.5, 2.0, "eager")
    assert torch.equal(p, ref)
