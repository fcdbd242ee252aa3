"""Tall matrices iterated in their own layout (hf_muon.ns.layout): same results as the transposed copy, no
transposed copies in or out."""

import importlib

import pytest
import torch

from hf_muon.ns import layout
from hf_muon.ns.batching import Job, NSConfig, run_jobs
from hf_muon.ns.coefficients import schedule
from hf_muon.ns.gram import gram_iterate
from hf_muon.ns.newton_schulz import ns_iterate, orthogonalize

NS = importlib.import_module("hf_muon.ns.newton_schulz")


def _tall_view(B, m, n, dtype, seed=0):
    """A normalised wide (B, m, n) X as the .mT of a contiguous tall stack, and the same X contiguous."""
    g = torch.Generator().manual_seed(seed)
    T = torch.randn(B, n, m, generator=g, dtype=torch.float64)
    T = (T / (T.norm(dim=(-2, -1), keepdim=True) * 1.01)).to(dtype)
    return T.mT, T.mT.contiguous()


def test_left_mul_matches_matmul_in_both_layouts():
    g = torch.Generator().manual_seed(1)
    M = torch.randn(3, 8, 8, generator=g, dtype=torch.float64)
    X, Xc = _tall_view(3, 8, 20, torch.float64)
    assert layout.is_tall_view(X) and not layout.is_tall_view(Xc)
    for x in (X, Xc, X[0], Xc[0]):
        m = M if x.ndim == 3 else M[0]
        out = layout.like(x)
        assert layout.is_tall_view(out) == layout.is_tall_view(x)
        assert torch.allclose(layout.left_mul(m, x, out), m @ x, atol=1e-12)
        assert torch.allclose(layout.left_mul(m, x, layout.like(x), beta=0.5), 0.5 * x + m @ x, atol=1e-12)


@pytest.mark.parametrize("method", ["newton_schulz", "gram", "per_matrix"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tall_view_equals_contiguous_wide(monkeypatch, method, dtype):
    """The loop on the .mT view of a tall stack gives what it gives on the contiguous wide copy, keeps the tall
    layout (its .mT is contiguous: the weight update reads it in order), and leaves the input untouched."""
    if method == "per_matrix":
        monkeypatch.setattr(NS, "LOOP_NUMEL", 100)
    tr = schedule("polar_express", 5)
    X, Xc = _tall_view(4, 24, 64, dtype)
    before = X.clone()
    run = (lambda x: gram_iterate(x, tr, (2, 4))) if method == "gram" else (lambda x: ns_iterate(x, tr))
    got, ref = run(X), run(Xc)
    assert torch.equal(X, before)
    assert got.mT.is_contiguous() and got.shape == ref.shape
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert torch.allclose(got.float(), ref.float(), atol=tol)
    got2 = run(X[0])  # 2-D
    assert got2.mT.is_contiguous() and torch.allclose(got2.float(), ref[0].float(), atol=tol)


def test_kept_tall_result_is_not_overwritten():
    tr = schedule("polar_express", 5)
    X, _ = _tall_view(3, 32, 80, torch.bfloat16)
    for run in (lambda x: ns_iterate(x, tr), lambda x: gram_iterate(x, tr, (2, 4))):
        first = run(X)
        kept = first.clone()
        run(_tall_view(3, 32, 80, torch.bfloat16, seed=5)[0])
        assert torch.equal(first, kept)


@pytest.mark.parametrize("method", ["newton_schulz", "gram", "auto"])
def test_run_jobs_tall_results_are_contiguous_and_correct(method):
    """Tall and wide jobs of the same matrix size batch separately; every result is contiguous in its job's
    shape and equals orthogonalize on that matrix alone."""
    g = torch.Generator().manual_seed(3)
    tensors = [torch.randn(96, 32, generator=g), torch.randn(32, 96, generator=g), torch.randn(96, 32, generator=g),
               torch.randn(2, 96, 32, generator=g)]
    cfg = NSConfig(dtype="float32", method=method)
    out = run_jobs([Job(t, cfg) for t in tensors])
    for t, o in zip(tensors, out):
        assert o.shape == t.shape and o.is_contiguous()
        assert torch.allclose(o, orthogonalize(t, dtype="float32", method=method), atol=2e-5)


def test_tall_stack_is_normalised_in_its_own_layout(monkeypatch):
    """The stack a tall bucket is normalised into has the pieces' own (tall) shape: no transposed copy."""
    seen = []
    real = NS.normalize_into

    def spy(pieces, out, *a, **k):
        seen.append((tuple(pieces[0].shape[-2:]), tuple(out.shape[-2:]), pieces[0].is_contiguous()))
        return real(pieces, out, *a, **k)

    monkeypatch.setattr(importlib.import_module("hf_muon.ns.batching"), "normalize_into", spy)
    run_jobs([Job(torch.randn(96, 32), NSConfig(dtype="float32")), Job(torch.randn(32, 96), NSConfig(dtype="float32"))])
    assert sorted(seen) == [((32, 96), (32, 96), True), ((96, 32), (96, 32), True)]
