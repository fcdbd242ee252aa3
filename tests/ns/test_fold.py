"""The Frobenius normalisation folded into the first Newton-Schulz step (``ns_iterate(normalize=s)``) equals
normalising first, to the compute dtype's rounding, for the standard and the Gram iteration."""

import importlib

import pytest
import torch

from hf_muon.ns.coefficients import normalization_scale, schedule
from hf_muon.ns.newton_schulz import (
    folds_normalization,
    frobenius_divisor,
    iterate_pieces,
    normalize_into,
    ns_iterate,
    stack_into,
)

NS = importlib.import_module("hf_muon.ns.newton_schulz")
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def _stack(dtype, seed=0):
    """Wide matrices whose norms span six orders of magnitude (each one's divisor must be its own)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4, 24, 64, generator=g, dtype=torch.float64)
    X = X * torch.tensor([1e-3, 1.0, 7.0, 1e3], dtype=torch.float64)[:, None, None]
    return X.to(dtype)


def _normalised_first(X, coefficients, eps=1e-7):
    s = normalization_scale(coefficients)
    acc = torch.float64 if X.dtype == torch.float64 else torch.float32
    d = (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True, dtype=acc) * s).clamp_min(eps)
    return (X / d).to(X.dtype)


@pytest.mark.parametrize("method", ["newton_schulz", "gram"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("coefficients", ["polar_express", "keller"])
def test_fold_equals_normalising_first(method, dtype, coefficients):
    X = _stack(dtype)
    before = X.clone()
    triples = schedule(coefficients, 5)
    folded = ns_iterate(X, triples, method, normalize=normalization_scale(coefficients))
    plain = ns_iterate(_normalised_first(X, coefficients), triples, method)
    assert torch.equal(X, before)  # the input (a momentum buffer, possibly) is never written
    assert folded.dtype == dtype
    torch.testing.assert_close(folded, plain, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gram_fold_in_bf16_stays_within_bf16_rounding(seed):
    """ns_iterate(normalize=) is correct in bf16 too (iterate_pieces does not use it there: less precise)."""
    X = _stack(torch.float32, seed)
    triples = schedule("polar_express", 5)
    ref = ns_iterate(_normalised_first(X, "polar_express").double(), triples, "gram")
    Xb = X.bfloat16()
    folded = ns_iterate(Xb, triples, "gram", normalize=normalization_scale("polar_express")).double()
    plain = ns_iterate(_normalised_first(Xb, "polar_express"), triples, "gram").double()
    err_fold = (folded - ref).norm(dim=(-2, -1)) / ref.norm(dim=(-2, -1))
    err_plain = (plain - ref).norm(dim=(-2, -1)) / ref.norm(dim=(-2, -1))
    assert (err_fold < 0.08).all() and (err_fold < 1.5 * err_plain).all(), (err_fold, err_plain)


def test_standard_bf16_normalises_first():
    """The folded steps are less precise in bf16 (folds_normalization's docstring), so iterate_pieces divides
    first there: its result is bit-identical to normalising into the stack, then iterating."""
    assert not folds_normalization(torch.bfloat16) and not folds_normalization(torch.float16)
    assert folds_normalization(torch.float32) and folds_normalization(torch.float64)
    pieces = [_stack(torch.float32), _stack(torch.float32, 1)[:2].mT.contiguous().mT]
    out = iterate_pieces(pieces, torch.bfloat16, "polar_express", 5)
    X = torch.empty(6, 24, 64, dtype=torch.bfloat16)
    expected = ns_iterate(normalize_into(pieces, X, normalization_scale("polar_express")), schedule("polar_express", 5))
    gram = iterate_pieces(pieces, torch.bfloat16, "polar_express", 5, "gram")
    assert torch.equal(gram, ns_iterate(X, schedule("polar_express", 5), "gram"))
    assert torch.equal(out, expected)


def test_fold_on_the_per_matrix_loop_path(monkeypatch):
    X = _stack(torch.float32)
    triples = schedule("polar_express", 5)
    s = normalization_scale("polar_express")
    batched = ns_iterate(X, triples, normalize=s)
    monkeypatch.setattr(NS, "LOOP_NUMEL", 100)
    looped = ns_iterate(X, triples, normalize=s)
    torch.testing.assert_close(looped, batched, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("method", ["newton_schulz", "gram", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zero_and_tiny_matrices_give_zeros_not_nan(method, dtype):
    X = torch.zeros(3, 16, 80, dtype=dtype)
    X[1, 0, 0] = 1e-30 if dtype == torch.float32 else 0.0
    out = ns_iterate(X, schedule("polar_express", 5), method, normalize=1.01)
    assert torch.isfinite(out).all() and out.abs().max() < 1e-20


def test_zero_steps_only_normalise():
    X = _stack(torch.float64)
    out = ns_iterate(X, [], normalize=1.0)
    torch.testing.assert_close(out.norm(dim=(-2, -1)), torch.ones(4, dtype=torch.float64))


def test_divisor_is_the_frobenius_norm_from_the_trace():
    X = _stack(torch.float64)
    d = frobenius_divisor(X @ X.mT, 2.0)
    torch.testing.assert_close(d, 2.0 * X.norm(dim=(-2, -1), keepdim=True))
    assert frobenius_divisor(torch.zeros(2, 3, 3), 1.0, eps=1e-7).eq(1e-7).all()


def test_stack_into_copies_casts_and_transposes_only_when_needed():
    a = torch.randn(2, 8, 16)
    assert stack_into([a], torch.float32) is a  # nothing to do: no copy
    t = torch.randn(1, 16, 8).mT  # a transposed (tall) piece
    out = stack_into([a, t], torch.bfloat16)
    assert out.shape == (3, 8, 16) and out.dtype == torch.bfloat16 and out.is_contiguous()
    assert torch.equal(out[:2], a.bfloat16()) and torch.equal(out[2:], t.bfloat16())
