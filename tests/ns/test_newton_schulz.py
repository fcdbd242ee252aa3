"""Newton-Schulz and the SVD reference: exact polynomial action, edge shapes, batching, dtypes."""

import math

import numpy as np
import pytest
import torch

from hf_muon import orthogonalize, scalar_map, schedule
from hf_muon.ns.coefficients import KELLER, POLAR_EXPRESS, POLAR_EXPRESS_SAFETY
from hf_muon.ns.newton_schulz import resolve_dtype


def _expected(G: torch.Tensor, coefficients, steps):
    """U f(Σ/‖G‖_F) Vᵀ in float64: what Newton-Schulz must produce, singular value by singular value."""
    G64 = G.double()
    U, S, Vh = torch.linalg.svd(G64, full_matrices=False)
    f = torch.from_numpy(scalar_map((S / torch.linalg.norm(G64)).numpy(), coefficients, steps))
    return (U * f) @ Vh, f


@pytest.mark.parametrize("coefficients", ["keller", "polar_express"])
@pytest.mark.parametrize("shape", [(48, 96), (96, 48), (64, 64)])
def test_ns_is_the_scalar_polynomial_on_singular_values(coefficients, shape):
    G = torch.randn(*shape)
    O = orthogonalize(G, steps=5, coefficients=coefficients, dtype="float32")
    expected, f = _expected(G, coefficients, 5)
    assert O.dtype == torch.float32
    assert torch.allclose(O.double(), expected, atol=2e-5)
    sv = torch.linalg.svdvals(O.double())
    assert torch.allclose(sv.sort().values, f.sort().values, atol=2e-5)


def test_singular_values_land_in_the_known_bands():
    G = torch.randn(128, 256)
    sv_k = torch.linalg.svdvals(orthogonalize(G, 5, "keller", dtype="float32"))
    sv_p = torch.linalg.svdvals(orthogonalize(G, 5, "polar_express", dtype="float32"))
    assert 0.6 < sv_k.min() and sv_k.max() < 1.25
    assert 0.8 < sv_p.min() and sv_p.max() < 1.15
    # Polar Express is tighter around 1 than Keller at equal steps
    assert (sv_p - 1).abs().max() < (sv_k - 1).abs().max()


def test_polar_express_converges_to_svd_reference():
    G = torch.randn(64, 200, dtype=torch.float64)
    O = orthogonalize(G, steps=12, coefficients="polar_express")
    R = orthogonalize(G, method="svd")
    assert O.dtype == torch.float64
    assert (O - R).abs().max() < 1e-4


def test_svd_reference_is_polar_factor_and_handles_rank_deficiency():
    A = torch.randn(20, 3, dtype=torch.float64) @ torch.randn(3, 30, dtype=torch.float64)
    R = orthogonalize(A, method="svd")
    sv = torch.linalg.svdvals(R)
    assert torch.allclose(sv[:3], torch.ones(3, dtype=torch.float64), atol=1e-10)
    assert sv[3:].abs().max() < 1e-10
    # R has the same row and column spaces as A: A = R (Rᵀ A)
    assert torch.allclose(R @ (R.T @ A), A, atol=1e-9)


@pytest.mark.parametrize("coefficients", ["keller", "polar_express"])
def test_zero_inputs_give_zeros_and_tiny_or_huge_ones_the_result_of_their_scaled_copy(coefficients):
    for G in (torch.zeros(8, 16), torch.zeros(3, 5, 7)):
        O = orthogonalize(G, 5, coefficients)
        assert torch.isfinite(O).all() and O.abs().max() == 0
    G = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    O = orthogonalize(G, 5, coefficients, dtype="float32")
    for scale in (2.0**-100, 2.0**-70, 2.0**70, 2.0**100):  # ‖G‖_F past fp32's squared range, below and above
        # the safe path takes the norm as amax·‖G/amax‖: equal to fp32 rounding of the norm
        torch.testing.assert_close(orthogonalize(G * scale, 5, coefficients, dtype="float32"), O, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 37), (37, 1), (1, 10_000), (10_000, 1), (1, 1)])
def test_vectors_and_extreme_aspect(shape):
    g = torch.randn(*shape)
    O = orthogonalize(g, 5, "keller", dtype="float32")
    f1 = float(scalar_map(1.0, "keller", 5))  # a rank-1 input has one normalised singular value: 1
    assert O.shape == g.shape
    assert torch.allclose(O, f1 * g / g.norm(), atol=1e-5)


def test_wide_and_tall_are_transposes():
    G = torch.randn(30, 70)
    assert torch.allclose(
        orthogonalize(G.T.contiguous(), dtype="float32"), orthogonalize(G, dtype="float32").T, atol=1e-6
    )


def test_batched_equals_per_matrix():
    G = torch.randn(3, 4, 16, 40)
    G[1, 2] = 0.0  # one zero matrix inside a batch must not disturb the others
    G[0, 1] *= 1e4  # nor one with a very different scale (normalisation is per matrix)
    O = orthogonalize(G, 5, "polar_express", dtype="float32")
    for i in range(3):
        for j in range(4):
            assert torch.allclose(O[i, j], orthogonalize(G[i, j], 5, "polar_express", dtype="float32"), atol=1e-6)
    assert O[1, 2].abs().max() == 0


def test_bf16_input_and_explicit_dtypes():
    G = torch.randn(32, 64)
    ref = orthogonalize(G, 5, "keller", dtype="float32")
    O = orthogonalize(G.bfloat16(), 5, "keller", dtype="float32")  # bf16 in, fp32 compute, bf16 out
    assert O.dtype == torch.bfloat16
    assert (O.float() - ref).abs().max() < 0.02
    O16 = orthogonalize(G, 5, "keller", dtype="bfloat16")  # bf16 compute, result back in the input dtype
    assert O16.dtype == torch.float32 and (O16 - ref).abs().max() < 0.1
    sv = torch.linalg.svdvals(O16)
    assert 0.6 < sv.min() and sv.max() < 1.3


def test_auto_dtype_policy(monkeypatch):
    from hf_muon.ns.newton_schulz import cpu_has_fast_bf16

    cpu = torch.device("cpu")
    cpu_has_fast_bf16.cache_clear()
    monkeypatch.setenv("HF_MUON_CPU_NS_DTYPE", "float32")
    assert resolve_dtype("auto", cpu, torch.float32) == torch.float32
    cpu_has_fast_bf16.cache_clear()
    monkeypatch.setenv("HF_MUON_CPU_NS_DTYPE", "bfloat16")
    assert resolve_dtype("auto", cpu, torch.float32) == torch.bfloat16
    cpu_has_fast_bf16.cache_clear()
    monkeypatch.setenv("HF_MUON_CPU_NS_DTYPE", "fp8")
    with pytest.raises(ValueError, match="valid: float32, bfloat16"):
        resolve_dtype("auto", cpu, torch.float32)
    cpu_has_fast_bf16.cache_clear()
    monkeypatch.delenv("HF_MUON_CPU_NS_DTYPE")
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    native = any(f in flags.split() for f in ("avx512_bf16", "amx_bf16", "bf16"))
    assert resolve_dtype("auto", cpu, torch.float32) == (torch.bfloat16 if native else torch.float32)
    cpu_has_fast_bf16.cache_clear()
    assert resolve_dtype("auto", cpu, torch.float64) == torch.float64
    assert resolve_dtype("auto", torch.device("cuda"), torch.float32) == torch.bfloat16
    assert resolve_dtype(torch.float16, cpu, torch.float32) == torch.float16
    with pytest.raises(ValueError, match="valid: auto"):
        resolve_dtype("int8", cpu, torch.float32)


def test_schedules():
    assert schedule("keller", 3) == [KELLER] * 3
    pe = schedule("polar_express", 10)
    assert len(pe) == 10 and pe[8] == pe[9] == (1.875, -1.25, 0.375)
    a, b, c = pe[0]
    assert math.isclose(a, 8.28721201814563 / POLAR_EXPRESS_SAFETY)
    assert math.isclose(c, 17.300387312530933 / POLAR_EXPRESS_SAFETY**5)
    assert POLAR_EXPRESS[-1] == (1.875, -1.25, 0.375)  # the last polynomial carries no safety factor
    assert schedule([(2.0, -1.5, 0.5)], 2) == [(2.0, -1.5, 0.5)] * 2
    assert schedule([3.0, -3.2, 1.2], 1) == [(3.0, -3.2, 1.2)]
    with pytest.raises(ValueError, match="valid: keller, polar_express"):
        schedule("cubic", 5)
    with pytest.raises(ValueError, match="3 entries"):
        schedule([(1.0, 2.0)], 5)
    with pytest.raises(ValueError, match="non-negative int"):
        schedule("keller", -1)


def test_custom_coefficients_run_through_orthogonalize():
    G = torch.randn(16, 32)
    cubic = [(1.5, -0.5, 0.0)]  # classic cubic Newton-Schulz, converges to exactly 1
    O = orthogonalize(G, 25, cubic, dtype="float64")
    sv = torch.linalg.svdvals(O)
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-6)


def test_scalar_map_lift_thresholds_match_the_guide():
    # papers.md: Keller×5 maps sigma >= ~1.07e-3 to >= 0.5; each extra step lowers it ~3.44x
    x = np.logspace(-7, 0, 200_001)
    thr5 = x[np.argmax(scalar_map(x, "keller", 5) >= 0.5)]
    thr6 = x[np.argmax(scalar_map(x, "keller", 6) >= 0.5)]
    assert 0.9e-3 < thr5 < 1.2e-3
    assert 3.2 < thr5 / thr6 < 3.7


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_stacks_take_the_per_matrix_update_with_the_same_result(monkeypatch, dtype):
    """Above LOOP_NUMEL elements per matrix, ns_iterate updates X matrix by matrix into two reused buffers; the
    result equals the batched baddbmm path and the input stack is left untouched."""
    import importlib

    from hf_muon.ns.coefficients import schedule

    O = importlib.import_module("hf_muon.ns.newton_schulz")

    X = torch.randn(5, 12, 20, dtype=dtype)
    X = X / X.norm(dim=(-2, -1), keepdim=True) / 1.01  # what orthogonalize feeds the loop (Polar Express safety 1.01)
    before = X.clone()
    batched = O.ns_iterate(X, schedule("polar_express", 6))
    monkeypatch.setattr(O, "LOOP_NUMEL", 100)  # 12×20 = 240 elements: now "large"
    looped = O.ns_iterate(X, schedule("polar_express", 6))
    assert torch.equal(X, before)
    assert torch.allclose(looped, batched, atol=1e-6 if dtype == torch.float32 else 1e-12)
    assert torch.allclose(looped, O.orthogonalize(X, steps=6, dtype=dtype), atol=1e-5)
