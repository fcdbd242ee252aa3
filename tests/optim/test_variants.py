"""Update-rule variants (NorMuon, AdaMuon, cautious weight decay, per-head splits): the fast optimizer against the
float64 references over several steps, lr = 0 no-op, state layout and bytes, weights_only round trip with
bit-identical resume and the dtype policy, and the four ways to reach the knobs."""

import copy

import pytest
import torch
from conftest import weights_only_resume

import hf_muon
from hf_muon import Muon, MuonConfig
from hf_muon.ns.blocks import Split
from hf_muon.optim.apply import cautious_decay_
from hf_muon.optim.variants.reference import reference_variant_step

HEADS = Split(-2, (8, 8, 8, 8), 1, "heads")
LAYOUTS = {  # shape, group keys, split
    "linear": ((24, 40), {}, None),
    "conv1d": ((40, 24), {"transposed": True}, None),
    "experts": ((3, 20, 8), {"experts": True}, None),
    "per_head": ((32, 16), {}, HEADS),
}
KW = dict(lr=0.02, weight_decay=0.1, momentum=0.9)


def _ref_state(shape, group, variant):
    st = {"buf": torch.zeros(shape, dtype=torch.float64)}
    if variant == "normuon":
        st["v"] = torch.zeros(shape[:-2] + (shape[-1] if group.get("transposed") else shape[-2],), dtype=torch.float64)
    elif variant == "adamuon":
        st["v"] = torch.zeros(shape, dtype=torch.float64)
    return st


def _run(layout, variant, cautious, dtype, ns_dtype, scale_mode="moonlight", steps=4):
    shape, group, split = LAYOUTS[layout]
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(*shape, dtype=dtype))
    g = dict(params=[p], **group, **({"split": split.spec()} if split else {}))
    opt = Muon(
        [g], variant=variant, cautious_wd=cautious, ns_dtype=ns_dtype, scale_mode=scale_mode, variant_beta2=0.9, **KW
    )
    w, st = p.detach().double().clone(), _ref_state(shape, group, variant)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        grad = torch.randn(shape, generator=gen, dtype=torch.float64)
        p.grad = grad.to(dtype)
        opt.step()
        w, st = reference_variant_step(
            w,
            grad,
            st,
            variant=variant,
            cautious_wd=cautious,
            split=split,
            beta2=0.9,
            scale_mode=scale_mode,
            transposed=group.get("transposed", False),
            experts=group.get("experts", False),
            **KW,
        )
    return p, opt, w, st


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(
    "variant,cautious", [("normuon", False), ("adamuon", False), ("muon", True), ("normuon", True)]
)
def test_float64_fast_path_equals_the_reference_over_four_steps(layout, variant, cautious):
    p, opt, w, st = _run(layout, variant, cautious, torch.float64, "auto", scale_mode="mup")
    assert torch.allclose(p.detach(), w, rtol=0, atol=1e-10)
    if variant != "muon":
        key = f"{variant}_v"
        assert torch.allclose(opt.state[p][key].reshape(-1), st["v"].reshape(-1), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "variant,cautious,layout",
    [
        ("normuon", False, "linear"),
        ("adamuon", False, "conv1d"),
        ("muon", True, "experts"),
        ("adamuon", True, "per_head"),
        ("muon", False, "per_head"),
    ],
)
def test_fast_fp32_matches_the_float64_reference(variant, cautious, layout):
    p, _, w, _ = _run(layout, variant, cautious, torch.float32, "float32")
    assert ((p.detach().double() - w).abs().max() / w.abs().max()) < 2e-6


@pytest.mark.parametrize("variant", ["normuon", "adamuon"])
def test_update_rms_is_matched_to_adamw_size(variant):
    """Moonlight scale: ‖lr·α·Ô‖_RMS = 0.2·lr exactly, whatever the second moment did to Ô."""
    p = torch.nn.Parameter(torch.randn(48, 32))
    opt = Muon([p], lr=0.01, weight_decay=0.0, variant=variant)
    opt.track_stats = "light"
    for s in range(3):
        p.grad = torch.randn(48, 32, generator=torch.Generator().manual_seed(s))
        opt.step()
        assert opt.last_stats["update_rms_muon"] == pytest.approx(0.2 * 0.01, rel=1e-5)


@pytest.mark.parametrize(
    "knobs",
    [
        dict(variant="normuon"),
        dict(variant="adamuon"),
        dict(cautious_wd=True),
        dict(variant="adamuon", cautious_wd=True, per_head=True),
    ],
)
def test_lr_zero_is_a_no_op_for_every_variant(knobs):
    from conftest import tiny_llama

    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, lr=0.0, weight_decay=0.1, **knobs)
    before = copy.deepcopy(model.state_dict())
    x = torch.randint(0, 128, (2, 8))
    for _ in range(2):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(opt.state[p] for g in opt.param_groups for p in g["params"])  # state still advanced


def _bf16_mlp():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 12)).to(torch.bfloat16)


def _steps(model, opt, n, seed):
    for s in range(n):
        g = torch.Generator().manual_seed(seed + s)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
        opt.step()


@pytest.mark.parametrize("variant", ["normuon", "adamuon"])
def test_weights_only_round_trip_keeps_fp32_second_moments_and_resumes_bit_identically(variant):
    model = _bf16_mlp()

    def make(m):
        return hf_muon.create_optimizer(m, lr=1e-2, variant=variant, momentum_dtype="float32", cautious_wd=True)

    opt = make(model)
    _steps(model, opt, 3, 0)
    model2, opt2 = weights_only_resume(model, opt, make)
    key = f"{variant}_v"
    for p, q in zip(model.parameters(), model2.parameters()):
        if key in opt.state[p]:
            assert opt2.state[q][key].dtype == torch.float32 and q.dtype == torch.bfloat16
            assert torch.equal(opt2.state[q][key], opt.state[p][key])
    _steps(model, opt, 3, 10)
    _steps(model2, opt2, 3, 10)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_state_layout_and_bytes_are_exact():
    """NorMuon adds one value per output neuron, AdaMuon one per element, in the momentum dtype policy."""
    lin = torch.nn.Parameter(torch.randn(48, 32))
    c1d = torch.nn.Parameter(torch.randn(32, 48))  # transposed (in, out): 48 neurons in the columns
    for variant, extra in (("muon", 0), ("normuon", 48 + 48), ("adamuon", 2 * 48 * 32)):
        opt = Muon([dict(params=[lin]), dict(params=[c1d], transposed=True)], lr=1e-3, variant=variant)
        lin.grad, c1d.grad = torch.randn_like(lin), torch.randn_like(c1d)
        opt.step()
        keys = {
            "muon": {"momentum_buffer"},
            "normuon": {"momentum_buffer", "normuon_v"},
            "adamuon": {"momentum_buffer", "adamuon_v"},
        }[variant]
        assert set(opt.state[lin]) == set(opt.state[c1d]) == keys
        nbytes = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values())
        assert nbytes == 4 * (2 * 48 * 32 + extra)
        if variant == "normuon":
            assert opt.state[lin]["normuon_v"].shape == (48, 1) and opt.state[c1d]["normuon_v"].shape == (1, 48)


def test_cautious_decay_only_where_update_and_weight_agree():
    w = torch.tensor([[1.0, -1.0], [2.0, -2.0]])
    o = torch.tensor([[0.5, 0.5], [-0.5, 0.0]])
    cautious_decay_([w], [o], lr=0.5, weight_decay=0.2)  # decay factor 0.1 where o·w ≥ 0
    assert torch.equal(w, torch.tensor([[0.9, -1.0], [2.0, -1.8]]))
    cautious_decay_([w], [o], lr=0.0, weight_decay=0.2)
    assert torch.equal(w, torch.tensor([[0.9, -1.0], [2.0, -1.8]]))


def test_knobs_are_reachable_four_ways(tmp_path):
    from conftest import tiny_llama

    want = dict(variant="adamuon", cautious_wd=True, per_head=True, qk_clip=50.0, variant_beta2=0.9)
    y = tmp_path / "muon.yaml"
    y.write_text("".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in want.items()))
    configs = [
        MuonConfig(**want),
        MuonConfig.from_dict(want),
        MuonConfig.from_yaml(y),
        MuonConfig.from_optim_args("variant=adamuon,cautious_wd=true,per_head=true,qk_clip=50,variant_beta2=0.9"),
    ]
    assert all(c == configs[0] for c in configs)
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, configs[2])
    muon = [g for g in opt.param_groups if g["use_muon"]]
    assert {(g["variant"], g["cautious_wd"], g["variant_beta2"]) for g in muon} == {("adamuon", True, 0.9)}
    assert any(g["split"] and g["split"]["label"] == "heads" for g in muon) and opt.qk_clip.tau == 50.0
    direct = Muon(hf_muon.param_groups(model, configs[0]), config=configs[0], model=model)
    assert direct.qk_clip is not None and Muon([torch.nn.Parameter(torch.randn(4, 4))], variant="normuon")


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(variant="nor_muon"), "variant='nor_muon' is not valid; valid: muon, normuon, adamuon"),
        (dict(variant="adamuon", update_base="adam"), "variant='adamuon' needs update_base='momentum'"),
        (dict(variant="normuon", spectral_power=0.5), "needs update_base='momentum' and spectral_power=0"),
        (dict(qk_clip=-1.0), r"qk_clip=-1.0 is out of range"),
        (dict(variant_beta2=1.0), r"variant_beta2=1.0 is out of range"),
    ],
)
def test_bad_variant_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        MuonConfig(**bad)


def test_group_level_variant_checks_and_routing_knobs_need_the_model():
    with pytest.raises(ValueError, match=r"param_groups\[0\]: variant='normuon' needs update_base"):
        Muon([dict(params=[torch.nn.Parameter(torch.randn(4, 4))], variant="normuon", update_base="adam")])
    with pytest.raises(ValueError, match="per_head is a routing knob"):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], per_head=True)
    with pytest.raises(ValueError, match="qk_clip needs the model"):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], config=MuonConfig(qk_clip=10.0))


def test_a_checkpoint_written_before_the_variant_knobs_still_resumes():
    p, b = torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(4))

    def make():
        return Muon([dict(params=[p]), dict(params=[b], use_muon=False)], lr=1e-2)

    opt = make()
    p.grad, b.grad = torch.randn_like(p), torch.randn_like(b)
    opt.step()
    old = opt.state_dict()
    for g in old["param_groups"]:
        for k in ("variant", "variant_beta2", "variant_eps", "cautious_wd"):
            g.pop(k)
    resumed = make()
    resumed.load_state_dict(old)
    resumed.step()
    assert resumed.param_groups[0]["variant"] == "muon" and resumed.param_groups[0]["cautious_wd"] is False
