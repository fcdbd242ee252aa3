"""accelerate's own FSDP2 code under hf_muon on CPU (``tests/scripts/accel_fsdp2.py``: the optimizer built before
``prepare`` as the Trainer does, accelerate's parameter swap, SHARDED_STATE_DICT save/resume, HSDP through
``ParallelismConfig``); the Trainer's own ``--fsdp`` path (``tests/scripts/trainer_fsdp_cpu.py`` replaces only
accelerate's device gate); and the layout the routing line states, with the warning when FSDP was asked for but the
model is not sharded."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, child_env, clm_args, flags, free_port

from hf_muon.integrations.announce import run_layout

BIN = Path(sys.executable).parent


def _torchrun(n, args, timeout=420):
    env = child_env(ACCELERATE_USE_CPU="true")
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", str(n), "--master_port", str(free_port()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("hsdp", [False, True], ids=["fsdp2-mesh-2", "hsdp-mesh-2x2"])
def test_accelerate_fsdp2_prepare_equals_one_process_and_resumes(tmp_path, hsdp):
    out = tmp_path / "res.json"
    args = [
        str(REPO / "tests" / "scripts" / "accel_fsdp2.py"),
        "--out",
        str(out),
        "--ckpt",
        str(tmp_path / "ckpt"),
    ]
    proc = _torchrun(4 if hsdp else 2, args + (["--hsdp"] if hsdp else []))
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text())
    print(res)
    assert res["is_fsdp2"] and res["optimizer"] == "Muon" and res["optimizer_params_swapped_to_dtensors"]
    assert res["placements"] == (["(Replicate(), Shard(dim=0))"] if hsdp else ["(Shard(dim=0),)"])
    assert res["rel_vs_one_process"] <= 1e-5  # fp32 NS
    assert res["rel_resumed_vs_uninterrupted"] == 0.0  # SHARDED_STATE_DICT through accelerate
    assert (tmp_path / "ckpt" / "optimizer_0").is_dir() and (tmp_path / "ckpt" / "pytorch_model_fsdp_0").is_dir()


def _trainer_run(out, fsdp: bool, **extra):
    """``train_clm.py`` on 2 ranks through the gate wrapper: DDP, or the Trainer's own ``--fsdp`` with FSDP2."""
    shard = {
        "fsdp": "full_shard",
        "fsdp_config": json.dumps({"fsdp_version": 2, "state_dict_type": "SHARDED_STATE_DICT"}),
    }
    args = clm_args(out, 4, optim_args="ns_dtype=float32", save_strategy="steps", save_steps=2, **extra)
    scripts = [str(REPO / "tests" / "scripts" / name) for name in ("trainer_fsdp_cpu.py", "train_clm.py")]
    proc = _torchrun(2, [*scripts, *args, *(flags(**shard) if fsdp else [])])
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    return proc.stderr, summary, torch.load(out / "final.pt", weights_only=True)


@pytest.mark.slow
def test_trainer_own_fsdp2_flags_equal_ddp_and_resume_exactly(tmp_path):
    """``--fsdp full_shard --fsdp_config '{"fsdp_version": 2}'`` in an unmodified Trainer script: the Trainer builds
    the plugin, accelerate shards with ``fully_shard``, hf_muon steps the DTensors. fp32 NS on 2 ranks gives DDP's
    weights, and the SHARDED_STATE_DICT checkpoint of step 2 resumes to the same step-4 weights."""
    ddp_log, ddp, ddp_w = _trainer_run(tmp_path / "ddp", False)
    log, fsdp, w = _trainer_run(tmp_path / "fsdp", True)
    ckpt = tmp_path / "fsdp" / "checkpoint-2"
    _, resumed, resumed_w = _trainer_run(tmp_path / "res", True, resume_from_checkpoint=ckpt)
    assert "layout: DDP ×2 —" in ddp_log and ddp["dtensor_params"] == 0
    assert "layout: FSDP2 mesh (2,)" in log and "not applied" not in log and fsdp["dtensor_params"] == 21
    assert fsdp["optimizer"] == resumed["optimizer"] == "Muon"
    assert (ckpt / "optimizer_0").is_dir() and (ckpt / "pytorch_model_fsdp_0").is_dir()  # sharded checkpoint
    for k in ddp_w:
        assert torch.allclose(w[k], ddp_w[k], rtol=1e-5, atol=1e-7), k
        assert torch.equal(resumed_w[k], w[k]), k


def _state(kind, fsdp_version=2, replicate=1):
    return SimpleNamespace(
        distributed_type=SimpleNamespace(value=kind),
        fsdp_plugin=SimpleNamespace(fsdp_version=fsdp_version),
        parallelism_config=SimpleNamespace(dp_replicate_size=replicate),
        device=SimpleNamespace(type="cpu"),
    )


def test_layout_line_states_what_the_run_has(caplog, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    args = SimpleNamespace(world_size=2, fsdp=[])
    assert run_layout(args, _state("MULTI_CPU")) == "DDP ×2"
    assert run_layout(SimpleNamespace(world_size=1, fsdp=[]), _state("NO")) == "single process"
    assert run_layout(args, _state("FSDP")) == "FSDP2 mesh (2,)"
    assert run_layout(SimpleNamespace(world_size=4, fsdp=[]), _state("FSDP", replicate=2)) == "HSDP mesh (2, 2)"
    with caplog.at_level("WARNING", logger="hf_muon"):
        layout = run_layout(SimpleNamespace(world_size=2, fsdp=["full_shard"]), _state("MULTI_CPU"))
    assert layout == "DDP ×2 (FSDP requested, not applied)"
    assert "FSDP was requested" in caplog.text and "NOT sharded" in caplog.text and "MULTI_CPU on cpu" in caplog.text


@pytest.mark.slow
def test_trainer_fsdp_on_cpu_warns_that_the_model_is_not_sharded(tmp_path):
    out = tmp_path / "fsdp"
    proc = _torchrun(
        2,
        [
            str(REPO / "tests" / "scripts" / "train_clm.py"),
            *clm_args(out, 2, per_device_train_batch_size=2, fsdp="full_shard", fsdp_config='{"fsdp_version": 2}'),
        ],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "FSDP was requested" in proc.stderr and "the model is NOT sharded" in proc.stderr
    assert "layout: DDP ×2 (FSDP requested, not applied)" in proc.stderr
    assert json.loads((out / "hf_muon_routing.json").read_text())["summary"]["layout"].startswith("DDP ×2")
