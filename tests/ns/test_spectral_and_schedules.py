"""Spectral family U Σ^p Vᵀ against the SVD, layer-aware NS schedules, auto step selection on known spectra."""

import pytest
import torch
from conftest import tiny_llama, with_spectrum

from hf_muon import Muon, param_groups
from hf_muon.ns.schedule import (
    DepthSchedule,
    lift_threshold,
    normalized_sigma_quantile,
    parse_schedule,
    resolve_steps,
    steps_for,
)
from hf_muon.ns.spectral_power import spectral_power, svd_power


@pytest.mark.parametrize("p", [0.5, 0.25])
@pytest.mark.parametrize("shape", [(48, 96), (96, 48), (3, 20, 30)])
def test_fast_fractional_powers_match_svd(p, shape):
    X = torch.randn(*shape, dtype=torch.float64)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 3e-5)):
        Y = spectral_power(X.to(dtype), p)
        R = svd_power(X, p)
        assert Y.dtype == dtype
        assert ((Y.double() - R).norm() / R.norm()) < tol


def test_fractional_power_on_wide_spread_and_degenerate_spectra():
    X = with_spectrum(40, 80, torch.logspace(0, -2, 40))
    assert (spectral_power(X.float(), 0.5).double() - svd_power(X, 0.5)).norm() / svd_power(X, 0.5).norm() < 1e-3
    low_rank = torch.randn(40, 4, dtype=torch.float64) @ torch.randn(4, 80, dtype=torch.float64)
    Y = spectral_power(low_rank.float(), 0.25)
    assert torch.isfinite(Y).all()
    assert (Y.double() - svd_power(low_rank, 0.25)).norm() / svd_power(low_rank, 0.25).norm() < 1e-2
    assert spectral_power(torch.zeros(8, 16), 0.5).abs().max() == 0


def test_power_endpoints_and_general_p():
    X = torch.randn(20, 30, dtype=torch.float64)
    assert torch.equal(spectral_power(X, 1.0), X)
    O = spectral_power(X, 0.0, steps=12)
    assert (O - svd_power(X, 0.0)).abs().max() < 1e-4
    Y = spectral_power(X, 0.3)  # no fast path: exact SVD
    sv = torch.linalg.svdvals(Y)
    assert torch.allclose(sv, torch.linalg.svdvals(X) ** 0.3, atol=1e-10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        spectral_power(X, 1.5)


def test_adam_family_at_p1_is_adamw_and_msgd_at_p1_is_momentum_sgd():
    w = torch.nn.Parameter(torch.randn(16, 24))
    w_ref = torch.nn.Parameter(w.detach().clone())
    opt = Muon(
        [w],
        lr=1e-2,
        weight_decay=0.1,
        spectral_power=1.0,
        update_base="adam",
        scale_mode="none",
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    ref = torch.optim.AdamW([w_ref], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    for s in range(5):
        g = torch.randn(16, 24, generator=torch.Generator().manual_seed(s))
        w.grad, w_ref.grad = g.clone(), g.clone()
        opt.step(), ref.step()
    assert torch.allclose(w, w_ref, atol=1e-6)
    v = torch.nn.Parameter(torch.zeros(8, 8))
    opt = Muon([v], lr=0.1, weight_decay=0.0, spectral_power=1.0, scale_mode="none", nesterov=False, momentum=0.5)
    for g in (torch.ones(8, 8), torch.ones(8, 8)):
        v.grad = g
        opt.step()
    assert torch.allclose(v, torch.full((8, 8), -0.1 * (1 + 1.5)))  # B1 = 1, B2 = 0.5·1 + 1


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_muon_group_with_spectral_power_matches_svd_reference(p):
    w = torch.nn.Parameter(torch.randn(12, 20, dtype=torch.float64))
    w0 = w.detach().clone()
    opt = Muon([w], lr=0.05, weight_decay=0.0, spectral_power=p, scale_mode="none", nesterov=False)
    w.grad = torch.randn(12, 20, dtype=torch.float64)
    opt.step()
    assert torch.allclose(w, w0 - 0.05 * svd_power(w.grad, p), atol=1e-8)


def test_schedule_parsing_and_resolution():
    assert parse_schedule("last2:10") == DepthSchedule(2, 10, 5)
    assert parse_schedule("last1:8:4") == DepthSchedule(1, 8, 4)
    assert parse_schedule("7") == 7 and parse_schedule("auto") == "auto"
    with pytest.raises(ValueError, match="last<k>:<steps>"):
        parse_schedule("deep")
    with pytest.raises(ValueError, match="invalid ns_steps regex"):
        parse_schedule({"(": 3})
    d = DepthSchedule(last=2, steps=10)
    assert resolve_steps(d, "model.layers.3.mlp.up_proj.weight", 3, 4) == 10
    assert resolve_steps(d, "model.layers.2.mlp.up_proj.weight", 2, 4) == 10
    assert resolve_steps(d, "model.layers.1.mlp.up_proj.weight", 1, 4) == 5
    m = {r"mlp\.(up|gate)": 9, r"o_proj": "auto", "default": 4}
    assert resolve_steps(m, "model.layers.0.mlp.up_proj.weight", 0, 2) == 9
    assert resolve_steps(m, "model.layers.0.self_attn.o_proj.weight", 0, 2) == "auto"
    assert resolve_steps(m, "model.layers.0.self_attn.q_proj.weight", 0, 2) == 4


def test_param_groups_split_muon_groups_by_resolved_steps():
    model = tiny_llama(layers=4)
    groups = param_groups(model, ns_steps="last1:9")
    steps = {n: g["ns_steps"] for g in groups if g["use_muon"] for n in g["param_names"]}
    assert steps["model.layers.3.self_attn.q_proj.weight"] == 9
    assert steps["model.layers.0.self_attn.q_proj.weight"] == 5
    opt = Muon(groups, lr=1e-3)
    assert sorted({g["ns_steps"] for g in opt.param_groups if g["use_muon"]}) == [5, 9]


def test_lift_thresholds_follow_the_slope_at_zero():
    for t in range(5, 10):  # each extra Keller step lowers the threshold by ≈ a = 3.4445
        assert 3.2 < lift_threshold("keller", t) / lift_threshold("keller", t + 1) < 3.7
    assert 1.0e-3 < lift_threshold("keller", 5) < 1.15e-3  # papers.md: Keller×5 lifts σ ≥ 1.07e-3 to ≥ 0.5
    assert 5.0e-4 < lift_threshold("polar_express", 5) < 5.8e-4  # PE T=5: 5.39e-4
    assert steps_for(1e-2, "keller") == 4 and steps_for(1e-3 * 1.1, "keller") == 5
    assert steps_for(1e-4, "keller") == 7 and steps_for(1e-9, "keller", max_steps=12) == 12


def test_sigma_quantile_estimate_on_known_spectra():
    sv = torch.logspace(0, -3, 64)
    X = with_spectrum(64, 128, sv)
    exact = torch.quantile(sv.double() / sv.double().norm(), 0.5).item()
    assert normalized_sigma_quantile(X.float(), 0.5) == pytest.approx(exact, rel=1e-3)
    assert normalized_sigma_quantile(X.T, 0.5) == pytest.approx(exact, rel=1e-6)


def test_auto_picks_fewest_steps_that_lift_the_quantile():
    healthy = with_spectrum(32, 64, torch.linspace(1.0, 0.5, 32)).float()  # σ_0.5 ≈ 0.13 → few steps
    starved = with_spectrum(32, 64, torch.cat([torch.ones(2), torch.full((30,), 2e-4)])).float()
    a, b = torch.nn.Parameter(torch.zeros(32, 64)), torch.nn.Parameter(torch.zeros(32, 64))
    opt = Muon([a, b], lr=1e-3, ns_steps="auto", coefficients="keller", momentum=0.0)
    a.grad, b.grad = healthy, starved
    opt.step()
    sa, sb = int(opt.state[a]["ns_steps"]), int(opt.state[b]["ns_steps"])
    assert sa == steps_for(normalized_sigma_quantile(healthy, 0.5), "keller")
    assert sa <= 4 and sb >= 7 and sb == steps_for(normalized_sigma_quantile(starved, 0.5), "keller")
    # the chosen count lifts the median singular value of the update to >= 0.5
    from hf_muon.ns.newton_schulz import newton_schulz

    O = newton_schulz(starved, steps=sb, coefficients="keller", dtype="float32")
    assert torch.linalg.svdvals(O).median() >= 0.5
    O5 = newton_schulz(starved, steps=5, coefficients="keller", dtype="float32")
    assert torch.linalg.svdvals(O5).median() < 0.5


def test_auto_re_estimates_every_n_steps_and_round_trips():
    w = torch.nn.Parameter(torch.zeros(16, 32))
    opt = Muon([w], lr=1e-3, ns_steps="auto", momentum=0.0)
    opt.param_groups[0]["auto_every"] = 3
    spectra = [torch.linspace(1, 0.9, 16), torch.cat([torch.ones(1), torch.full((15,), 1e-4)])]
    seen = []
    for s in range(6):
        w.grad = with_spectrum(16, 32, spectra[0 if s < 3 else 1]).float()
        opt.step()
        seen.append(int(opt.state[w]["ns_steps"]))
    assert seen[0] == seen[1] == seen[2] and seen[3] > seen[0]
    sd = opt.state_dict()
    import io

    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    torch.load(buf, weights_only=True)


def test_optim_args_accept_schedules_and_spectral_family():
    from hf_muon.integrations.optim_args import parse_optim_args

    a = parse_optim_args("ns_steps=last2:10,spectral_power=0.25,update_base=adam,auto_every=50")
    assert a.ns_steps == "last2:10" and a.spectral_power == 0.25 and a.update_base == "adam"
    assert parse_optim_args("ns_steps=auto").ns_steps == "auto"
    with pytest.raises(ValueError, match="last<k>:<steps>"):
        parse_optim_args("ns_steps=deep")
    with pytest.raises(ValueError, match="out of range"):
        parse_optim_args("spectral_power=2")
