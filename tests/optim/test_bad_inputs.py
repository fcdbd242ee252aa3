"""The bad-input table (docs/bad_inputs.md): every bad input below is tried, and the error (type and exact text),
warning or counted skip it gets must be the one the table shows. Rows and cases are checked both ways, so the
table cannot drift from the code. Regenerate the table after a deliberate message change with
``python tests/optim/test_bad_inputs.py > docs/bad_inputs.md`` and review the diff."""

import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import hf_muon
from hf_muon import Muon, MuonConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad_inputs.md"
TEST = "tests/optim/test_bad_inputs.py::test_bad_input_gets_what_the_table_says"


def _w(*shape, dtype=torch.float32):
    return nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype))


def _muon(params, **kw):
    return Muon(
        [dict(use_muon=True, params=params, param_names=[f"w{i}" for i in range(len(params))])],
        lr=kw.pop("lr", 1e-3),
        **kw,
    )


def _step(grad, dtype=torch.float32, shape=(16, 32), **kw):
    p = _w(*shape, dtype=dtype)
    opt = _muon([p], **kw)
    p.grad = grad(shape).to(dtype) if callable(grad) else grad
    opt.step()
    return f"skipped {opt.param_groups[0]['nonfinite_skipped']} (nonfinite_skipped)"


def _nan(shape):
    g = torch.randn(shape)
    g[0, 0] = float("nan")
    return g


def _inf(shape):
    g = torch.randn(shape)
    g[1, 2] = float("inf")
    return g


def _bf16_max(shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(3)).sign() * 2e38


def _sparse():
    p = _w(16, 32)
    opt = _muon([p])
    p.grad = torch.zeros(16, 32).to_sparse()
    opt.step()


def _flat_at_step():
    p = _w(16, 32)
    opt = _muon([p])
    p._is_flat_param = True
    p.grad = torch.randn(16, 32)
    opt.step()


def _state_inf():
    p = _w(16, 32)
    opt = _muon([p])
    p.grad = torch.randn(16, 32)
    opt.step()
    opt.state[p]["momentum_buffer"][0, 0] = float("inf")
    opt.step()


def _load_inf_state():
    p = _w(16, 32)
    opt = _muon([p])
    p.grad = torch.randn(16, 32)
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["momentum_buffer"][0, 0] = float("nan")
    _muon([_w(16, 32)]).load_state_dict(saved)


def _plain_head():
    hf_muon.route(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))


def _flat_model():
    model = nn.Linear(4, 4)
    model.weight._is_flat_param = True
    hf_muon.route(model)


def _qk_clip_inf():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import tiny_llama

    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, lr=1e-3, qk_clip=10.0)
    x = torch.randint(0, 128, (1, 8))
    model(input_ids=x, labels=x).loss.backward()
    opt.qk_clip.logits.values[0][1] = float("inf")
    opt.step()


def _group(**bad):
    return lambda: Muon([dict(use_muon=True, params=[_w(16, 32)], **bad)], lr=1e-3)


def _adamw_group(**bad):
    return lambda: Muon(
        [dict(use_muon=True, params=[_w(16, 32)]), dict(use_muon=False, params=[_w(4)], **bad)], lr=1e-3
    )


# id: (what is tried, how)
CASES = {
    "config_lr_negative": ("MuonConfig(lr=-1.0)", lambda: MuonConfig(lr=-1.0)),
    "config_momentum_one": ("MuonConfig(momentum=1.0)", lambda: MuonConfig(momentum=1.0)),
    "config_momentum_text": ("MuonConfig(momentum='0.9')", lambda: MuonConfig(momentum="0.9")),
    "config_nesterov_text": ("MuonConfig(nesterov='yes')", lambda: MuonConfig(nesterov="yes")),
    "config_variant_unknown": ("MuonConfig(variant='lion')", lambda: MuonConfig(variant="lion")),
    "config_variant_eps_zero": ("MuonConfig(variant_eps=0.0)", lambda: MuonConfig(variant_eps=0.0)),
    "config_variant_beta2_one": ("MuonConfig(variant_beta2=1.0)", lambda: MuonConfig(variant_beta2=1.0)),
    "config_ns_steps_negative": ("MuonConfig(ns_steps=-1)", lambda: MuonConfig(ns_steps=-1)),
    "config_coefficients_unknown": (
        "MuonConfig(coefficients='nope')",
        lambda: MuonConfig(coefficients="nope"),
    ),
    "config_scale_mode_unknown": ("MuonConfig(scale_mode='big')", lambda: MuonConfig(scale_mode="big")),
    "config_ns_dtype_unknown": ("MuonConfig(ns_dtype='int8')", lambda: MuonConfig(ns_dtype="int8")),
    "config_ns_method_unknown": ("MuonConfig(ns_method='qr')", lambda: MuonConfig(ns_method="qr")),
    "config_kernels_unknown": ("MuonConfig(kernels='fast')", lambda: MuonConfig(kernels="fast")),
    "config_momentum_dtype_fp16": (
        "MuonConfig(momentum_dtype='float16')",
        lambda: MuonConfig(momentum_dtype="float16"),
    ),
    "config_spectral_power_above_one": (
        "MuonConfig(spectral_power=1.5)",
        lambda: MuonConfig(spectral_power=1.5),
    ),
    "config_update_base_unknown": ("MuonConfig(update_base='sgd')", lambda: MuonConfig(update_base="sgd")),
    "config_nonfinite_unknown": ("MuonConfig(nonfinite='ignore')", lambda: MuonConfig(nonfinite="ignore")),
    "config_auto_quantile_zero": ("MuonConfig(auto_quantile=0.0)", lambda: MuonConfig(auto_quantile=0.0)),
    "config_auto_every_zero": ("MuonConfig(auto_every=0)", lambda: MuonConfig(auto_every=0)),
    "config_lora_policy_unknown": (
        "MuonConfig(lora_policy='a_only')",
        lambda: MuonConfig(lora_policy="a_only"),
    ),
    "config_qk_clip_negative": ("MuonConfig(qk_clip=-1.0)", lambda: MuonConfig(qk_clip=-1.0)),
    "config_betas_one": ("MuonConfig(betas=(1.0, 0.999))", lambda: MuonConfig(betas=(1.0, 0.999))),
    "optim_args_unknown_key": (
        "MuonConfig.from_optim_args('variantt=normuon')",
        lambda: MuonConfig.from_optim_args("variantt=normuon"),
    ),
    "optim_args_bad_value": (
        "MuonConfig.from_optim_args('momentum=high')",
        lambda: MuonConfig.from_optim_args("momentum=high"),
    ),
    "variant_with_adam_base": (
        "Muon(..., variant='normuon', update_base='adam')",
        lambda: _muon([_w(16, 32)], variant="normuon", update_base="adam"),
    ),
    "muon_unknown_keyword": ("Muon(..., momentun=0.9)", lambda: Muon([_w(16, 32)], lr=1e-3, momentun=0.9)),
    "muon_routing_keyword": (
        "Muon(..., lora_policy='adamw')",
        lambda: Muon([_w(16, 32)], lr=1e-3, lora_policy="adamw"),
    ),
    "muon_nothing_on_muon": (
        "Muon([{'params': [b], 'use_muon': False}])",
        lambda: Muon([dict(use_muon=False, params=[_w(4)])], lr=1e-3),
    ),
    "qk_clip_without_model": (
        "Muon(params, config=MuonConfig(qk_clip=100.0)) without model=",
        lambda: Muon([_w(16, 32)], config=MuonConfig(qk_clip=100.0)),
    ),
    "qk_clip_as_muon_keyword": (
        "Muon(params, qk_clip=100.0)",
        lambda: Muon([_w(16, 32)], lr=1e-3, qk_clip=100.0),
    ),
    "group_variant_eps_zero": ("param group {'variant_eps': 0.0}", _group(variant_eps=0.0)),
    "group_lr_negative": ("param group {'lr': -1.0}", _group(lr=-1.0)),
    "group_weight_decay_negative": ("param group {'weight_decay': -0.1}", _group(weight_decay=-0.1)),
    "group_auto_min_above_max": (
        "param group {'ns_steps': 'auto', 'auto_min': 9, 'auto_max': 3}",
        _group(ns_steps="auto", auto_min=9, auto_max=3),
    ),
    "group_depth_schedule": ("param group {'ns_steps': 'last2:8'}", _group(ns_steps="last2:8")),
    "adamw_group_eps_negative": ("AdamW group {'eps': -1e-8}", _adamw_group(eps=-1e-8)),
    "adamw_group_fused_and_foreach": (
        "AdamW group {'fused': True, 'foreach': True}",
        _adamw_group(fused=True, foreach=True),
    ),
    "muon_group_1d_param": (
        "Muon group holding a 1-D parameter",
        lambda: Muon([dict(use_muon=True, params=[_w(32)])], lr=1e-3),
    ),
    "expert_group_2d_param": ("Muon group {'experts': True} holding a 2-D parameter", _group(experts=True)),
    "split_does_not_fit": (
        "param group {'split': {'axis': -2, 'sizes': [5, 5]}} on a (16, 32) weight",
        _group(split={"axis": -2, "sizes": [5, 5], "groups": 1, "label": "qkv"}),
    ),
    "cautious_wd_without_decay": (
        "cautious_wd=True with weight_decay=0.0",
        lambda: _muon([_w(16, 32)], cautious_wd=True, weight_decay=0.0),
    ),
    "grad_sparse": ("a sparse gradient", _sparse),
    "grad_nan_error": ("a NaN gradient element (nonfinite='error')", lambda: _step(_nan)),
    "grad_inf_skip": ("an inf gradient element (nonfinite='skip')", lambda: _step(_inf, nonfinite="skip")),
    "grad_flat_view_at_step": ("a Muon parameter that became a flat view after construction", _flat_at_step),
    "grad_bf16_max_error": (
        "bf16 gradient of ±2e38 (overflows the Nesterov mix)",
        lambda: _step(_bf16_max, torch.bfloat16),
    ),
    "grad_bf16_max_skip": (
        "bf16 gradient of ±2e38, nonfinite='skip'",
        lambda: _step(_bf16_max, torch.bfloat16, nonfinite="skip"),
    ),
    "grad_adam_moment_overflow": (
        "gradient of 1e30 under update_base='adam' (G² overflows fp32)",
        lambda: _step(lambda s: torch.full(s, 1e30), update_base="adam"),
    ),
    "state_nonfinite_momentum": ("a momentum buffer set to inf by hand in optimizer.state", _state_inf),
    "load_nonfinite_state": ("load_state_dict of a checkpoint whose momentum holds NaN", _load_inf_state),
    "route_include_1d": (
        "param_groups(model, include='bias')",
        lambda: hf_muon.route(nn.Linear(4, 4), include="bias"),
    ),
    "route_bad_regex": (
        "param_groups(model, exclude='(')",
        lambda: hf_muon.route(nn.Linear(4, 4), exclude="("),
    ),
    "route_flat_param_model": ("routing a model holding an FSDP v1 FlatParameter", _flat_model),
    "route_plain_model_head": ("a plain nn.Sequential whose last Linear is its head", _plain_head),
    "qk_clip_inf_logit": ("QK-Clip with a recorded max logit of +inf", _qk_clip_inf),
}


def outcome(thunk) -> tuple[str, str]:
    """(kind, text): the exception type and message, a warning's category and message, or the counted skip."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = thunk()
        except Exception as e:  # noqa: BLE001 -- recording what each bad input gets is the point
            return type(e).__name__, str(e)
    ours = [w for w in caught if issubclass(w.category, UserWarning)]
    if ours:
        return ours[0].category.__name__, str(ours[0].message)
    return "counted skip", str(result)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table() -> str:
    lines = [
        "# Bad inputs and what they get",
        "",
        "Every row is tried by the test suite: `" + TEST + "[<id>]` runs the input and checks that it gets "
        "exactly the error, warning or counted skip shown here (`tests/optim/test_bad_inputs.py`; the table is "
        "regenerated from it with `python tests/optim/test_bad_inputs.py > docs/bad_inputs.md`). A refused "
        "optimizer step writes nothing: no weight, no state, no counter — except where the state itself was "
        "already non-finite before the step (only reachable by editing `optimizer.state` by hand, since "
        "`load_state_dict` refuses such a checkpoint): then no weight is written but that step's state updates "
        "are. Under DDP and FSDP2 every rank raises the same error before any rank writes a weight. Skips are "
        "counted per param group in `nonfinite_skipped`.",
        "",
        "| id | bad input | gets | exact text |",
        "|---|---|---|---|",
    ]
    for key, (what, thunk) in CASES.items():
        kind, text = outcome(thunk)
        lines.append(f"| `{key}` | {_cell(what)} | {kind} | {_cell(text)} |")
    return "\n".join(lines) + "\n"


def _rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z0-9_]+)` \| (.*) \| ([A-Za-z ]+) \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(3), m.group(4).replace("\\|", "|"))
    return rows


def test_the_table_has_a_row_for_every_case_and_a_case_for_every_row():
    rows = _rows()
    assert len(rows) >= 40
    assert set(rows) == set(CASES), set(rows) ^ set(CASES)


@pytest.mark.parametrize("key", list(CASES))
def test_bad_input_gets_what_the_table_says(key):
    kind, text = outcome(CASES[key][1])
    assert kind != "counted skip" or text.startswith("skipped 1"), "the bad input was accepted silently"
    assert _rows()[key] == (kind, text.replace("\n", " "))


if __name__ == "__main__":
    sys.stdout.write(table())
