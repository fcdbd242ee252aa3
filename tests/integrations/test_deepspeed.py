"""DeepSpeed ZeRO-1/2/3 under ``--optim muon``: the adapter's translation and checks (in-process), and real
2-rank CPU runs (``DS_ACCELERATOR=cpu``, torchrun, gloo; slow) through an unmodified Trainer script with the
shipped configs: loss curves, the held-vs-routed check, resume from a DeepSpeed checkpoint, ZeRO-3 loading
under ``zero.Init``, and the update against hf_muon's own."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, child_env, clm_args, data_dir, free_port, gpt2_tokenizer, llama_for, sft_args

deepspeed = pytest.importorskip("deepspeed")

import hf_muon  # noqa: E402
from hf_muon.integrations import deepspeed as ds  # noqa: E402
from hf_muon.integrations.transformers import explicit_knobs  # noqa: E402

BIN = Path(sys.executable).parent
SCRIPT = REPO / "tests" / "scripts" / "train_clm.py"
CONFIGS = REPO / "hf_muon" / "configs"


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
    )


@pytest.mark.parametrize(
    "optim_args",
    [
        "variant=normuon",
        "ns_steps=7",
        "coefficients=polar_express",
        "per_head=true",
        "qk_clip=50",
        "spectral_power=0.5",
        "ns_dtype=fp32",
        "cautious_wd=true",
        "nesterov=false",
        "split_fused=true",
    ],
)
def test_knobs_deepspeed_cannot_honour_are_refused_by_name(optim_args):
    key = optim_args.split("=")[0]
    config = hf_muon.MuonConfig.from_optim_args(optim_args)
    with pytest.raises(ValueError, match=rf"optim_args {key}=.*cannot run under DeepSpeed"):
        ds.check_config({"zero_optimization": {"stage": 2}}, config, explicit_knobs(optim_args))


def test_honoured_knobs_pass_and_defaults_map_to_deepspeeds_muon():
    raw = "momentum=0.9,ns_method=newton_schulz,coefficients=keller,ns_steps=5,scale_mode=keller,lora_policy=adamw"
    config = hf_muon.MuonConfig.from_optim_args(raw)
    assert ds.check_config({"zero_optimization": {"stage": 1}}, config, explicit_knobs(raw)) == "DeepSpeed ZeRO-1"
    assert ds.NS_METHOD["auto"] == "gram" and ds.NS_METHOD["newton_schulz"] == "standard"


def test_config_checks_name_the_fix(caplog):
    cfg = hf_muon.MuonConfig()
    for stage0 in ({}, {"zero_optimization": {"stage": 0}}):
        with pytest.raises(ValueError, match=r"ZeRO stage 1, 2 or 3.*\"stage\": 2"):
            ds.check_config(stage0, cfg, set())
    z3 = {"zero_optimization": {"stage": 3}}
    assert ds.check_config(z3, cfg, set()) == "DeepSpeed ZeRO-3" and z3["zero_optimization"]["reduce_scatter"] is False
    with pytest.raises(ValueError, match="reduce_scatter"):
        ds.check_config({"zero_optimization": {"stage": 3, "reduce_scatter": True}}, cfg, set())
    with pytest.raises(ValueError, match="optimizer section is 'AdamW'"):
        ds.check_config({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}}, cfg, set())
    with pytest.raises(ValueError, match="scheduler section"):
        ds.check_config({"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR"}}, cfg, set())
    with pytest.raises(ValueError, match="optim_args momentum would have no effect"):
        ds.check_config({"zero_optimization": {"stage": 2}, "optimizer": {"type": "Muon"}}, cfg, {"momentum"})
    clipped = {"zero_optimization": {"stage": 2}, "gradient_clipping": 1.0}
    with caplog.at_level("WARNING", logger="hf_muon"):
        ds.check_config(clipped, cfg, set())
    assert clipped["gradient_clipping"] == 0.0 and "gradient_clipping=1.0 set to 0" in caplog.text
    for name in (
        "deepspeed_zero1",
        "deepspeed_zero2",
        "deepspeed_zero3",
    ):  # the shipped configs pass as they are
        shipped = json.loads((CONFIGS / f"{name}.json").read_text())
        before = json.dumps(shipped, sort_keys=True)
        ds.check_config(shipped, cfg, set())
        assert json.dumps(shipped, sort_keys=True) == before, name


def test_groups_carry_hf_muons_routing_and_the_lr_translation():
    model = tiny_llama()
    cfg = hf_muon.MuonConfig(lr=1e-3, weight_decay=0.1)
    routes, groups = ds.plan(model, cfg)
    assert [g["use_muon"] for g in groups] == [
        False,
        False,
        True,
        True,
    ]  # AdamW first: the Trainer logs group 0
    muon = {id(r.param): r for r in routes if r.kind == "muon"}
    assert {id(p) for g in groups if g["use_muon"] for p in g["params"]} == set(muon)
    for g in groups:
        for p in g["params"]:
            if g["use_muon"]:  # DeepSpeed's lr·√max(1, rows/cols) = hf_muon's lr·0.2·√max(rows, cols)
                rows, cols = p.shape
                assert g["lr"] * math.sqrt(max(1, rows / cols)) == pytest.approx(
                    1e-3 * 0.2 * math.sqrt(max(rows, cols))
                )
                assert g["lr"] * g["weight_decay"] == pytest.approx(1e-3 * 0.1)  # decay as hf_muon's: lr·λ
            else:
                assert g["lr"] == 1e-3 and g["weight_decay"] == (0.1 if p.ndim >= 2 else 0.0)
    ds.tag(model, routes)
    assert all(hasattr(p, "use_muon") for p in model.parameters())
    assert sum(p.use_muon for p in model.parameters()) == len(muon)


def test_zero3_partitioned_parameters_route_at_their_layer_shape():
    """zero.Init leaves every parameter 1-D (shape [0]); routing must see ds_shape, not silently choose AdamW."""
    model, plain = tiny_llama(), None
    plain = [(r.name, r.kind) for r in hf_muon.route(model)]
    saved = {}
    for i, p in enumerate(model.parameters()):  # what zero.Init leaves behind
        saved[id(p)] = p.data
        p.ds_shape, p.ds_id, p.ds_numel = p.shape, i, p.numel()
        p.data = torch.empty(0)
    with pytest.raises(ValueError, match="DeepSpeed ZeRO partitioned parameter"):
        hf_muon.route(model)
    routes, groups = ds.plan(model, hf_muon.MuonConfig())
    assert [(r.name, r.kind) for r in routes] == plain
    assert all(p.shape == (0,) and hasattr(p, "ds_id") for p in model.parameters())  # restored


def test_training_arguments_refuse_stage_0_while_parsing(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(ValueError, match="ZeRO stage 1, 2 or 3"):
        TrainingArguments(str(tmp_path), optim="muon", use_cpu=True, deepspeed={"zero_optimization": {"stage": 0}})


# ------------------------------------------------------------------ 2 CPU ranks, DeepSpeed's CPU accelerator


def _env(**extra):
    return child_env(DS_ACCELERATOR="cpu", TORCHDYNAMO_DISABLE="1", **extra)  # DeepSpeed's NS eager on CPU


def _torchrun(args, timeout=420):
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=timeout)


def _train(out, stage, model_dir, steps=6, **extra):
    deepspeed_config = CONFIGS / f"deepspeed_zero{stage}.json"
    common = dict(model_dir=model_dir, save_strategy="steps", save_steps=3, deepspeed=deepspeed_config)
    return _torchrun([str(SCRIPT), *clm_args(out, steps, **common, **extra)])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = gpt2_tokenizer(chat=False)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_llama")
    llama_for(tok, tie_word_embeddings=False).save_pretrained(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_zero_trains_holds_the_routing_and_resumes(tmp_path, model_dir, stage):
    full = _train(tmp_path / "full", stage, model_dir)
    assert full.returncode == 0, full.stderr[-4000:]
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    routing = json.loads((tmp_path / "full" / "hf_muon_routing.json").read_text())["summary"]
    assert summary["world_size"] == 2 and summary["optimizer"].startswith("DeepSpeedZeroOptimizer")
    assert summary["loaded_partitioned"] is (stage == 3)  # ZeRO-3: from_pretrained ran under zero.Init
    assert routing["layout"] == f"DeepSpeed ZeRO-{stage}" and routing["muon_params"] > 0
    held = f"DeepSpeed ZeRO-{stage} holds {routing['muon_tensors']} tensors ({routing['muon_params']:,} params"
    assert held in full.stderr and "= hf_muon's routing" in full.stderr
    losses = summary["losses"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    resumed = _train(tmp_path / "full", stage, model_dir, resume_from_checkpoint=tmp_path / "full" / "checkpoint-3")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    again = json.loads((tmp_path / "full" / "summary.json").read_text())["losses"]
    assert len(again) == 6 and again[:3] == losses[:3]  # steps 1-3 come back from the checkpoint's trainer state
    # fp32 weights and Adam state on CPU, same data order: steps 4-6 continue the curve (DeepSpeed's bf16 NS)
    assert again[3:] == pytest.approx(losses[3:], rel=1e-5), (losses, again)
    print(f"ZeRO-{stage} losses {losses}, resumed at 3: {again[3:]}")


@pytest.mark.slow
def test_deepspeed_update_matches_hf_muons_own(tmp_path):
    out = tmp_path / "update.json"
    proc = _torchrun([str(REPO / "tests" / "scripts" / "ds_update_check.py"), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text())
    for stage in ("1", "2", "3"):
        assert res["stages"][stage]["fp32"]["rel_update_diff_muon"] < 1e-3, res  # same rule, fp32 NS
        assert res["stages"][stage]["bf16"]["rel_update_diff_muon"] < 0.1, res  # DeepSpeed's bf16 NS
    assert "wte.weight" in (res["explicit_section_gpt2"] or "")  # name-based tagging is caught before any step


@pytest.mark.slow
def test_trl_sft_under_deepspeed_zero2(tmp_path):
    """TRL's sft script, unmodified, under torchrun with the shipped ZeRO-2 config."""
    import shutil

    from test_trl import _model, _tokenizer

    tok = _tokenizer()
    model_dir, data, out = tmp_path / "tiny", tmp_path / "tulu", tmp_path / "out"
    _model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data.mkdir()
    shutil.copy(data_dir() / "sft" / "tulu3_sft_mixture_sample.jsonl", data / "train.jsonl")
    proc = _torchrun(
        [
            "-m",
            "hf_muon.run",
            "-m",
            "trl.scripts.sft",
            *sft_args(
                model_dir,
                data,
                out,
                steps=3,
                save_steps=None,
                save_strategy="no",
                logging_steps=1,
                deepspeed=CONFIGS / "deepspeed_zero2.json",
            ),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    routing = json.loads((out / "hf_muon_routing.json").read_text())["summary"]
    assert routing["layout"] == "DeepSpeed ZeRO-2"
    assert f"DeepSpeed ZeRO-2 holds {routing['muon_tensors']} tensors" in proc.stderr


@pytest.mark.slow
def test_accelerate_deepspeed_plugin_on_cpu_is_said_not_applied(tmp_path):
    """accelerate's DeepSpeed plugin (an accelerate config with distributed_type: DEEPSPEED) reaches the Trainer as
    args.deepspeed_plugin; on CPU accelerate then runs DDP without DeepSpeed. hf_muon says so and trains with its own
    Muon instead of handing DeepSpeed's optimizer an unpartitioned run."""
    cfg = tmp_path / "acc_ds.yaml"
    cfg.write_text(
        f"compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\ndeepspeed_config:\n"
        f"  deepspeed_config_file: {CONFIGS / 'deepspeed_zero2.json'}\n  zero3_init_flag: false\n"
        "num_machines: 1\nnum_processes: 2\nmachine_rank: 0\nuse_cpu: false\n"
    )
    d = data_dir()
    out = tmp_path / "out"
    cmd = [
        str(BIN / "accelerate"),
        "launch",
        "--config_file",
        str(cfg),
        "--main_process_port",
        str(free_port()),
        str(SCRIPT),
        "--train_file",
        str(d / "pretrain" / "tinystories_validation_head.txt"),
        "--tokenizer_dir",
        str(d / "tokenizers" / "gpt2"),
        "--output_dir",
        str(out),
        "--use_cpu",
        "true",
        "--report_to",
        "none",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--save_strategy",
        "no",
        "--optim",
        "muon",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(ACCELERATE_USE_CPU="true"), cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "DeepSpeed was requested" in proc.stderr and "not through DeepSpeed" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizer"] == "Muon" and summary["world_size"] == 2
    layout = json.loads((out / "hf_muon_routing.json").read_text())["summary"]["layout"]
    assert layout == "DDP ×2 (DeepSpeed requested, not applied)"
