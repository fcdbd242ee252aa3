"""Unmodified scripts: `python -m hf_muon.run`, `hf-muon run`, torchrun, TRL's sft module, and exact resume
after SIGKILL. Each runs real processes on CPU."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, child_env, clm_args, free_port

SCRIPT = REPO / "tests" / "scripts" / "train_clm.py"
BIN = Path(sys.executable).parent


_env = child_env


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=kw.pop("env", _env()), cwd=REPO, **kw)
    return proc


def test_unmodified_script_works_through_the_startup_hook_and_the_launcher(tmp_path):
    plain = _run([sys.executable, str(SCRIPT), *clm_args(tmp_path / "a", steps=2)])
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["optimizer"] == "Muon"
    assert "on Muon" in plain.stderr and f"full table: {tmp_path / 'a' / 'hf_muon_routing.txt'}" in plain.stderr
    assert (tmp_path / "a" / "hf_muon_routing.txt").exists() and (tmp_path / "a" / "hf_muon_routing.json").exists()
    off = _run([sys.executable, str(SCRIPT), *clm_args(tmp_path / "off")], env=dict(_env(), HF_MUON_AUTOREGISTER="0"))
    assert off.returncode != 0 and "invalid choice: 'muon'" in off.stderr  # the hook off: today's behaviour
    bad = _run([sys.executable, str(SCRIPT), *clm_args(tmp_path / "bad", optim_args="ns_step=5")])
    assert bad.returncode != 0 and "unknown optim_args key 'ns_step'" in bad.stderr
    assert "parse_args_into_dataclasses" in bad.stderr  # raised while parsing arguments: no data or model work yet
    ok = _run(
        [sys.executable, "-m", "hf_muon.run", str(SCRIPT), *clm_args(tmp_path / "b", optim_args="ns_steps=5")],
        env=dict(_env(), HF_MUON_AUTOREGISTER="0"),
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["optimizer"] == "Muon" and len(summary["losses"]) == 6
    cli = _run([str(BIN / "hf-muon"), "run", str(SCRIPT), *clm_args(tmp_path / "c", steps=2)])
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["optimizer"] == "Muon"


def _final_weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    common = dict(save_strategy="steps", save_steps=4, lr_scheduler_type="cosine", warmup_steps=2)
    full = _run([sys.executable, "-m", "hf_muon.run", str(SCRIPT), *clm_args(tmp_path / "full", steps=8, **common)])
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run(
        [sys.executable, "-m", "hf_muon.run", str(SCRIPT), *clm_args(tmp_path / "run", steps=8, **common)],
        env=_env(HF_MUON_TEST_KILL_AT_STEP="4"),
    )
    assert killed.returncode == -signal.SIGKILL
    ckpt = tmp_path / "run" / "checkpoint-4"
    assert (ckpt / "optimizer.pt").exists() and not (tmp_path / "run" / "checkpoint-8").exists()
    # the optimizer checkpoint is plain tensors + primitives
    sd = torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert any(g["use_muon"] for g in sd["param_groups"])
    resumed = _run(
        [
            sys.executable,
            "-m",
            "hf_muon.run",
            str(SCRIPT),
            *clm_args(tmp_path / "run", steps=8, resume_from_checkpoint=ckpt, **common),
        ]
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "run")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [True, False], ids=["launcher", "plain-script"])
def test_torchrun_ddp(tmp_path, launcher):
    if shutil.which("torchrun", path=str(BIN)) is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp"
    entry = ["-m", "hf_muon.run", str(SCRIPT)] if launcher else [str(SCRIPT)]
    proc = _run(
        [
            str(BIN / "torchrun"),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            *entry,
            *clm_args(out, steps=3, ddp_backend="gloo"),
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["optimizer"] == "Muon"
    # the routing line and files come from rank 0 only
    assert (proc.stderr + proc.stdout).count("hf_muon: ") == 1
    assert (out / "hf_muon_routing.txt").exists() and (out / "hf_muon_routing.json").exists()


@pytest.mark.slow
def test_accelerate_launch_multi_cpu_through_the_launcher(tmp_path):
    out = tmp_path / "acc"
    proc = _run(
        [
            str(BIN / "accelerate"),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--main_process_port",
            str(free_port()),
            "-m",
            "hf_muon.run",
            str(SCRIPT),
            *clm_args(out, steps=3),
        ],
        env=_env(ACCELERATE_USE_CPU="true"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["optimizer"] == "Muon"


@pytest.mark.slow
def test_shipped_ddp_config_runs_on_cpu(tmp_path):
    out = tmp_path / "cfg"
    proc = _run(
        [
            str(BIN / "accelerate"),
            "launch",
            "--config_file",
            str(REPO / "hf_muon" / "configs" / "ddp.yaml"),
            "--num_processes",
            "2",
            "--mixed_precision",
            "no",
            "--main_process_port",
            str(free_port()),
            "-m",
            "hf_muon.run",
            str(SCRIPT),
            *clm_args(out, steps=2),
        ],
        env=_env(ACCELERATE_USE_CPU="true"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
