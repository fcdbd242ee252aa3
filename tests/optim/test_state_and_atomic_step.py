"""The state dtype policy through load_state_dict, the atomic step (a failed step changes nothing), and group
hyperparameter validation."""

import copy
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_llama, weights_only_resume
from torch import nn

import hf_muon
from hf_muon import Muon


def _grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g).to(p.dtype) for p in params]


def _bf16_model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).to(torch.bfloat16)


def _make(model, **kw):
    return hf_muon.create_optimizer(model, lr=1e-2, momentum_dtype="float32", **kw)


def _run(model, opt, steps, seed0):
    for s in range(steps):
        for p, g in zip(model.parameters(), _grads(list(model.parameters()), seed0 + s)):
            p.grad = g
        opt.step()


@pytest.mark.parametrize("ns_steps", [5, "auto"])
def test_fp32_momentum_of_bf16_params_survives_a_weights_only_resume(ns_steps):
    model = _bf16_model()
    opt = _make(model, ns_steps=ns_steps)
    _run(model, opt, 3, 0)
    model2, opt2 = weights_only_resume(model, opt, lambda m: _make(m, ns_steps=ns_steps))
    for p in model2.parameters():
        st = opt2.state[p]
        if "momentum_buffer" in st:
            assert p.dtype == torch.bfloat16 and st["momentum_buffer"].dtype == torch.float32
        if "ns_steps" in st:
            assert st["ns_steps"].dtype == torch.int64
    # the loaded buffer holds the saved fp32 values exactly (not a bf16 round trip)
    w = model[0].weight
    assert torch.equal(opt2.state[model2[0].weight]["momentum_buffer"], opt.state[w]["momentum_buffer"])
    _run(model, opt, 3, 10)
    _run(model2, opt2, 3, 10)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_fp32_momentum_survives_trainer_resume_from_checkpoint(tmp_path):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    data = [{"input_ids": torch.randint(0, 128, (16,)), "labels": torch.randint(0, 128, (16,))} for _ in range(32)]

    def args(out, **kw):
        return TrainingArguments(
            str(out),
            optim="muon",
            optim_args="momentum_dtype=float32",
            learning_rate=1e-3,
            per_device_train_batch_size=4,
            max_steps=6,
            save_steps=3,
            save_strategy="steps",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            logging_steps=100,
            seed=1,
            **kw,
        )

    def model():
        torch.manual_seed(0)
        return tiny_llama().to(torch.bfloat16)

    full = Trainer(model=model(), args=args(tmp_path / "full"), train_dataset=data)
    full.train()
    part = Trainer(model=model(), args=args(tmp_path / "part"), train_dataset=data)
    part.train()  # writes checkpoint-3 and checkpoint-6; resume a fresh trainer from checkpoint-3
    resumed = Trainer(model=model(), args=args(tmp_path / "part"), train_dataset=data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-3"))
    muon = [p for g in resumed.optimizer.param_groups if g["use_muon"] for p in g["params"]]
    assert muon and all(resumed.optimizer.state[p]["momentum_buffer"].dtype == torch.float32 for p in muon)
    for (n, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(a, b), n


def _snapshot(opt, params):
    state = {id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()} for p in params}
    counters = [(g["step"], g["nonfinite_skipped"]) for g in opt.param_groups]
    return [p.detach().clone() for p in params], state, counters


def test_a_nonfinite_gradient_in_the_last_group_changes_nothing():
    w = [torch.nn.Parameter(torch.randn(8, 4)) for _ in range(2)]
    b = [torch.nn.Parameter(torch.randn(4)) for _ in range(2)]
    opt = Muon(
        [
            dict(params=b, use_muon=False, param_names=["b0", "b1"]),
            dict(params=w[:1], param_names=["w0"]),
            dict(params=w[1:], param_names=["last.weight"]),
        ],
        lr=1e-2,
    )
    params = b + w
    for s in range(2):
        for p, g in zip(params, _grads(params, s)):
            p.grad = g
        opt.step()
    for p, g in zip(params, _grads(params, 7)):
        p.grad = g
    w[1].grad[0, 0] = float("nan")
    before = _snapshot(opt, params)
    with pytest.raises(FloatingPointError, match=r"'last.weight'.*step 3.*nothing was updated"):
        opt.step()
    after = _snapshot(opt, params)
    assert all(torch.equal(x, y) for x, y in zip(before[0], after[0]))
    assert before[2] == after[2]
    for pid, st in before[1].items():
        for k, v in st.items():
            assert torch.equal(v, after[1][pid][k]), k


def test_skip_policy_skips_only_the_offending_parameters():
    w = [torch.nn.Parameter(torch.randn(8, 4)) for _ in range(3)]
    b = [torch.nn.Parameter(torch.randn(4))]
    opt = Muon([dict(params=b, use_muon=False), dict(params=w)], lr=1e-2, nonfinite="skip")
    for p, g in zip(b + w, _grads(b + w, 0)):
        p.grad = g
    w[1].grad[2, 3] = float("inf")
    before = [p.detach().clone() for p in b + w]
    opt.step()
    changed = [not torch.equal(x, p) for x, p in zip(before, b + w)]
    assert changed == [True, True, False, True]
    assert opt.param_groups[1]["nonfinite_skipped"] == 1 and opt.param_groups[0]["nonfinite_skipped"] == 0
    assert "momentum_buffer" not in opt.state[w[1]]


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(lr=-1.0), r"param_groups\[0\]: lr=-1.0 is out of range"),
        (dict(weight_decay=-0.1), r"param_groups\[0\]: weight_decay=-0.1 is out of range"),
        (
            dict(betas=(1.0, 0.999)),
            r"param_groups\[0\]: betas=\(1.0, 0.999\) is not valid; valid: two floats in \[0, 1\)",
        ),
        (dict(eps=-1e-8), r"param_groups\[0\]: eps=-1e-08 is out of range"),
    ],
)
def test_invalid_adamw_group_hyperparameters_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        Muon(
            [
                dict(params=[torch.nn.Parameter(torch.randn(4))], use_muon=False, **bad),
                dict(params=[torch.nn.Parameter(torch.randn(4, 4))]),
            ]
        )


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(lr=-1e-3), r"param_groups\[1\]: lr=-0.001 is out of range"),
        (dict(momentum=1.0), r"param_groups\[1\]: momentum=1.0 is out of range"),
        (dict(ns_steps=-1), r"param_groups\[1\]: ns_steps"),
    ],
)
def test_invalid_muon_group_hyperparameters_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        Muon(
            [
                dict(params=[torch.nn.Parameter(torch.randn(4))], use_muon=False),
                dict(params=[torch.nn.Parameter(torch.randn(4, 4))], **bad),
            ]
        )


def test_invalid_constructor_values_name_the_key():
    with pytest.raises(ValueError, match=r"lr=-1 is out of range"):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], lr=-1)
    with pytest.raises(TypeError, match="unknown keyword 'ns_step'"):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], ns_step=5)
    with pytest.raises(ValueError, match="lora_policy is a routing knob"):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], lora_policy="both")


def test_plugin_imports_no_lab_or_optional_packages():
    code = (
        "import sys, torch, hf_muon\n"
        "m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))\n"
        "opt = hf_muon.create_optimizer(m, lr=1e-3)\n"
        "print(hf_muon.routing_report(m).splitlines()[-3])\n"
        "m(torch.randn(2, 8)).sum().backward(); opt.step()\n"
        "bad = [k for k in ('datasets', 'evaluate', 'matplotlib', 'trl', 'peft', 'transformers', 'hf_muon.lab')"
        " if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("key", ["momentum_buffer", "exp_avg_sq"])
def test_a_checkpoint_with_nonfinite_state_is_refused_and_nothing_is_loaded(key):
    """A non-finite saved moment would make every later step of its parameter fail: load_state_dict names it
    and leaves the optimizer as it was."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))
    opt = hf_muon.create_optimizer(model, lr=1e-2)
    model(torch.randn(3, 8)).sum().backward()
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    pid = next(i for i, st in saved["state"].items() if key in st)
    saved["state"][pid][key].view(-1)[0] = float("inf")
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=f"state '{key}' of .* holds NaN or ±inf; nothing was loaded"):
        opt.load_state_dict(saved)
    after = opt.state_dict()
    for i, st in before["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(after["state"][i][k])), (i, k)
