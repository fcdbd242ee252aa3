"""--optim muon through transformers: registration, optim_args, Trainer, MuonTrainer, PEFT, backends."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, tiny_llama

import hf_muon
from hf_muon.integrations.optim_args import parse_optim_args


def _args(tmp_path, **kw):
    from transformers import TrainingArguments

    base = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to=[],
        learning_rate=3e-3,
        max_steps=12,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    base.update(kw)
    return TrainingArguments(**base)


def _token_data(n=64, seq=16, vocab=128):
    g = torch.Generator().manual_seed(0)
    # a learnable pattern: each sequence counts upward from a random start
    starts = torch.randint(0, vocab, (n, 1), generator=g)
    ids = (starts + torch.arange(seq)) % vocab
    return [{"input_ids": x, "labels": x} for x in ids]


def test_registration_covers_every_config_path(tmp_path):
    from transformers import HfArgumentParser, TrainingArguments
    from transformers.training_args import OptimizerNames

    assert TrainingArguments(output_dir=str(tmp_path), optim="muon").optim == "muon"
    (cli,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--optim", "muon", "--optim_args", "ns_steps=7"]
    )
    assert cli.optim == OptimizerNames.MUON and cli.optim_args == "ns_steps=7"
    yaml_file = tmp_path / "cfg.yaml"
    yaml_file.write_text(f"output_dir: {tmp_path}\noptim: muon\n")
    (from_yaml,) = HfArgumentParser(TrainingArguments).parse_yaml_file(str(yaml_file))
    assert from_yaml.optim == "muon"
    (from_dict,) = HfArgumentParser(TrainingArguments).parse_dict({"output_dir": str(tmp_path), "optim": "muon"})
    assert from_dict.optim == "muon"
    n = len(OptimizerNames)
    hf_muon.register()
    hf_muon.register()
    assert len(OptimizerNames) == n  # idempotent
    assert TrainingArguments(output_dir=str(tmp_path), optim="adamw_torch").optim == "adamw_torch"
    with pytest.raises(ValueError, match="not a valid OptimizerNames"):
        TrainingArguments(output_dir=str(tmp_path), optim="muonn")


def test_existing_handler_is_not_overwritten_unless_forced():
    from transformers import trainer_optimizer as to

    key = to.OptimizerNames("muon")
    mine = to._OPTIMIZER_HANDLERS[key]
    sentinel = lambda ctx: None  # noqa: E731
    to._OPTIMIZER_HANDLERS[key] = sentinel
    try:
        hf_muon.register()
        assert to._OPTIMIZER_HANDLERS[key] is sentinel
        hf_muon.register(force=True)
        assert to._OPTIMIZER_HANDLERS[key] is mine
    finally:
        to._OPTIMIZER_HANDLERS[key] = mine


def test_training_args_bin_loads_in_a_fresh_process(tmp_path):
    args = _args(tmp_path, optim="muon", optim_args="ns_steps=6")
    path = tmp_path / "training_args.bin"
    torch.save(args, path)
    for pre in ("import hf_muon, torch", "import torch"):  # the startup hook: no import of hf_muon needed
        code = f"{pre}; a = torch.load({str(path)!r}, weights_only=False); print(a.optim.value, a.optim_args)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "muon ns_steps=6"


def test_trainer_optim_muon_trains_and_routes_as_reported(tmp_path):
    from transformers import Trainer

    model = tiny_llama()
    args = _args(
        tmp_path,
        optim="muon",
        optim_args="ns_steps=5,coefficients=keller",
        learning_rate=2e-2,
        lr_scheduler_type="constant",
        max_steps=30,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_token_data(n=128))
    trainer.train()
    opt = trainer.optimizer.optimizer  # AcceleratedOptimizer -> hf_muon.Muon
    assert isinstance(opt, hf_muon.Muon)
    muon_ids = {id(p) for g in opt.param_groups if g["use_muon"] for p in g["params"]}
    routed = {id(r.param) for r in hf_muon.route(model) if r.kind == "muon"}
    assert muon_ids == routed and len(muon_ids) == 14
    assert all(g["coefficients"] == "keller" for g in opt.param_groups if g["use_muon"])
    assert opt.param_groups[0]["use_muon"] is False  # group 0 (the logged lr) is AdamW
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:3]) / 3


def test_optim_args_cover_every_knob_and_lr_ratio(tmp_path):
    from transformers import Trainer

    args = _args(
        tmp_path,
        optim="muon",
        learning_rate=1e-3,
        weight_decay=0.05,
        adam_beta1=0.8,
        adam_epsilon=1e-6,
        optim_args="muon_lr_ratio=2,scale_mode=mup,momentum=0.9,nesterov=false,ns_dtype=float32,"
        "nonfinite=skip,exclude=o_proj,coefficients=3.4445:-4.775:2.0315;3:-3:1,adamw_fused=false",
    )
    trainer = Trainer(model=tiny_llama(), args=args, train_dataset=_token_data())
    opt = trainer.create_optimizer()
    muon = [g for g in opt.param_groups if g["use_muon"]]
    adam = [g for g in opt.param_groups if not g["use_muon"]]
    assert {g["lr"] for g in muon} == {2e-3} and {g["lr"] for g in adam} == {1e-3}
    g = muon[0]
    assert (g["scale_mode"], g["momentum"], g["nesterov"], g["ns_dtype"], g["nonfinite"]) == (
        "mup",
        0.9,
        False,
        "float32",
        "skip",
    )
    assert g["coefficients"] == [[3.4445, -4.775, 2.0315], [3.0, -3.0, 1.0]]
    assert adam[0]["betas"] == (0.8, 0.999) and adam[0]["eps"] == 1e-6
    assert {g["fused"] for g in opt.param_groups} == {False}
    assert all("o_proj" not in n for g in muon for n in g["param_names"])
    assert {g["weight_decay"] for g in muon} == {0.05}


@pytest.mark.parametrize(
    "bad, match",
    [
        (
            "ns_step=5",
            "unknown optim_args key .ns_step.*valid keys: adamw_fused, auto_every, .*batched, .*coefficients",
        ),
        ("scale_mode=spectral", "valid values: moonlight, keller, mup, none"),
        ("momentum=1.5", "out of range"),
        ("nesterov=maybe", "valid values: true, false"),
        ("coefficients=fast", "valid values: keller, polar_express"),
        ("muon_lr=1e-3,muon_lr_ratio=2", "not both"),
    ],
)
def test_bad_optim_args_are_clear_errors(tmp_path, bad, match):
    from transformers import Trainer

    with pytest.raises(ValueError, match=match):  # early: when the TrainingArguments are built
        _args(tmp_path, optim="muon", optim_args=bad)
    args = _args(tmp_path, optim="muon")
    args.optim_args = bad  # set after construction: still refused when the optimizer is built
    trainer = Trainer(model=tiny_llama(), args=args, train_dataset=_token_data())
    with pytest.raises(ValueError, match=match):
        trainer.create_optimizer()


def test_parse_optim_args_accepts_raw_string():
    a = parse_optim_args("ns_steps=7, lora_policy=b_only,moe_experts=muon,momentum_dtype=float32")
    assert (a.ns_steps, a.lora_policy, a.moe_experts, a.momentum_dtype) == (7, "b_only", "muon", "float32")
    with pytest.raises(ValueError, match="key=value"):
        parse_optim_args("ns_steps")


def test_deepspeed_stage_0_and_fsdp_v1_are_refused_with_what_to_do(tmp_path):
    from transformers import Trainer

    pytest.importorskip("deepspeed")
    model = tiny_llama()
    args = _args(tmp_path, optim="muon")
    args.deepspeed = {"zero_optimization": {"stage": 0}}  # ZeRO-1/2/3 run through DeepSpeed's Muon (test_deepspeed)
    with pytest.raises(ValueError, match=r"ZeRO stage 1, 2 or 3"):
        Trainer.get_optimizer_cls_and_kwargs(args, model)
    with pytest.raises(ValueError, match="FSDP v1.*fsdp_version: 2"):  # refused when the arguments are built
        _args(tmp_path, optim="muon", fsdp="full_shard", fsdp_config={"fsdp_version": 1})
    hf_muon.integrations.transformers.check_backend(
        SimpleNamespace(deepspeed=None, fsdp=True, fsdp_config={"version": 2})
    )  # FSDP2 passes


def test_muon_trainer_subclass_and_mixin(tmp_path):
    model = tiny_llama()
    trainer = hf_muon.MuonTrainer(
        model=model, args=_args(tmp_path, max_steps=3), train_dataset=_token_data(), muon_optim_args="ns_steps=3"
    )
    trainer.train()
    opt = trainer.optimizer.optimizer
    assert isinstance(opt, hf_muon.Muon) and opt.param_groups[-1]["ns_steps"] == 3


def test_peft_lora_through_trainer(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer

    model = get_peft_model(
        tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"])
    )
    base_q = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight.detach().clone()
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, optim="muon", optim_args="lora_policy=b_only", max_steps=4),
        train_dataset=_token_data(),
    )
    trainer.train()
    opt = trainer.optimizer.optimizer
    muon_names = [n for g in opt.param_groups if g["use_muon"] for n in g["param_names"]]
    assert muon_names and all("lora_B" in n for n in muon_names)
    adam_names = [n for g in opt.param_groups if not g["use_muon"] for n in g["param_names"]]
    assert any("lora_A" in n for n in adam_names) and any("modules_to_save" in n for n in adam_names)
    assert torch.equal(base_q, model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight)


def test_create_optimizer_through_accelerate_with_gradient_accumulation():
    import copy

    from accelerate import Accelerator

    torch.manual_seed(0)
    model = tiny_llama()
    twin = copy.deepcopy(model)
    data = _token_data(n=8, seq=12)
    acc = Accelerator(cpu=True, gradient_accumulation_steps=2)
    opt = hf_muon.create_optimizer(model, lr=3e-3, ns_steps=5)
    pmodel, popt = acc.prepare(model, opt)
    assert type(popt).__name__ == "AcceleratedOptimizer" and popt.optimizer is opt
    ref_opt = hf_muon.create_optimizer(twin, lr=3e-3, ns_steps=5)
    for i, ex in enumerate(data):
        batch = {k: v[None] for k, v in ex.items()}
        with acc.accumulate(pmodel):
            acc.backward(pmodel(**batch).loss)
            popt.step()
            popt.zero_grad()
        (twin(**batch).loss / 2).backward()
        if i % 2 == 1:
            ref_opt.step()
            ref_opt.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert opt.param_groups[-1]["step"] == 4  # stepped only on the 4 sync steps


def test_grad_scaler_contract():
    model = tiny_llama()
    opt = hf_muon.create_optimizer(model, lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x = torch.randint(0, 128, (2, 8))
    scaler.scale(model(input_ids=x, labels=x).loss).backward()
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    scaler.step(opt)
    scaler.update()
    assert not torch.equal(before, model.model.layers[0].mlp.up_proj.weight)
    opt.zero_grad()
    scaler.scale(model(input_ids=x, labels=x).loss).backward()
    model.model.layers[0].mlp.up_proj.weight.grad[0, 0] = float("inf")  # overflow: the scaler must skip the step
    snap = [p.detach().clone() for p in model.parameters()]
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(snap, model.parameters()))
    assert scaler.get_scale() == 2.0**7


def test_import_hf_muon_does_not_import_transformers():
    code = "import sys, hf_muon; print('transformers' in sys.modules, 'accelerate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False False"
