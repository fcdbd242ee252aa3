"""Every script in examples/ runs at tiny size, as a user runs it: its own process, its documented command line.
One-process runs are in the default suite (a few seconds each); multi-process launches and `trl sft` are slow."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, chat_llama, child_env, data_dir, example_trainer_args, muon_groups

EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent


def _run(cmd, cwd, **env):
    full = child_env(PYTHONPATH=os.environ.get("PYTHONPATH"), **env)  # examples run as a user's copy would
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=full, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _losses(stdout: str) -> list[float]:
    return [float(ln.split("loss")[1]) for ln in stdout.splitlines() if ln.startswith("step ")]


def test_plain_loop(tmp_path):
    proc = _run([sys.executable, EXAMPLES / "plain_loop.py", "--steps", "12", "--out", tmp_path], cwd=tmp_path)
    losses = _losses(proc.stdout)
    assert "muon" in proc.stdout and losses[-1] < losses[0] - 0.5, proc.stdout[-1500:]
    optimizer = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]
    assert [g for g in optimizer["param_groups"] if g.get("use_muon")]


def test_trainer_script_with_optim_muon(tmp_path):
    """The unmodified script gets Muon through the startup hook alone."""
    out = tmp_path / "out"
    _run(
        [sys.executable, EXAMPLES / "trainer.py", *example_trainer_args(chat_llama(tmp_path / "tiny"), out)],
        cwd=tmp_path,
    )
    groups = muon_groups(out / "checkpoint-2" / "optimizer.pt")
    assert groups and all(g["ns_steps"] == 5 for g in groups)


@pytest.mark.slow
def test_trainer_script_through_the_launcher_without_the_hook(tmp_path):
    out = tmp_path / "out"
    _run(
        [
            sys.executable,
            "-m",
            "hf_muon.run",
            EXAMPLES / "trainer.py",
            *example_trainer_args(chat_llama(tmp_path / "tiny"), out),
        ],
        cwd=tmp_path,
        HF_MUON_AUTOREGISTER="0",
    )
    assert muon_groups(out / "checkpoint-2" / "optimizer.pt")


def test_accelerate_loop_one_process(tmp_path):
    proc = _run([sys.executable, EXAMPLES / "accelerate_loop.py", "--steps", "6"], cwd=tmp_path)
    assert "done: 1 process(es)" in proc.stdout


def _accelerate_two_processes(tmp_path, *cmd):
    """``accelerate launch`` on 2 CPU processes with the config ``hf-muon config ddp`` writes."""
    _run([BIN / "hf-muon", "config", "ddp", "--out", tmp_path / "ddp.yaml"], cwd=tmp_path)
    config = ["--config_file", tmp_path / "ddp.yaml", "--num_processes", "2", "--mixed_precision", "no"]
    return _run([BIN / "accelerate", "launch", *config, *cmd], cwd=tmp_path, ACCELERATE_USE_CPU="true")


@pytest.mark.slow
def test_accelerate_loop_two_processes_with_the_shipped_config(tmp_path):
    proc = _accelerate_two_processes(tmp_path, EXAMPLES / "accelerate_loop.py", "--steps", "4")
    assert "done: 2 process(es)" in proc.stdout


@pytest.mark.slow
def test_fsdp2_hsdp_resume_across_layouts(tmp_path):
    """FSDP2 on 2 ranks for 4 steps, against HSDP 2 × 2 for 2 steps resumed on FSDP2 to 4: same losses."""
    torchrun = [BIN / "torchrun", "--nproc_per_node"]
    script = EXAMPLES / "fsdp2_hsdp.py"
    straight = _run([*torchrun, "2", script, "--mode", "fsdp2", "--ckpt", tmp_path / "a", "--steps", "4"], cwd=tmp_path)
    _run([*torchrun, "4", script, "--mode", "hsdp", "--ckpt", tmp_path / "b", "--steps", "2"], cwd=tmp_path)
    resumed = _run(
        [*torchrun, "2", script, "--mode", "fsdp2", "--ckpt", tmp_path / "b", "--steps", "4", "--resume"],
        cwd=tmp_path,
    )
    assert "steps 2..4" in resumed.stdout
    assert _losses(resumed.stdout) == pytest.approx(_losses(straight.stdout)[2:], rel=1e-4)


@pytest.mark.slow
def test_ddp_examples_free_the_model_before_ending_the_group(tmp_path):
    """A DDP reducer left holding the gloo group when it is destroyed can hang a rank after "done", at random;
    ``ddp_teardown_check`` makes that a certain failure: it refuses ``destroy_process_group`` while a DDP lives."""
    check = REPO / "tests" / "scripts" / "ddp_teardown_check.py"
    proc = _accelerate_two_processes(tmp_path, check, EXAMPLES / "accelerate_loop.py", "--steps", "2")
    assert "done: 2 process(es)" in proc.stdout
    ddp = ["--mode", "ddp", "--ckpt", tmp_path / "ck", "--steps", "2", "--save-every", "100"]
    proc = _run([BIN / "torchrun", "--nproc_per_node", "2", check, EXAMPLES / "fsdp2_hsdp.py", *ddp], cwd=tmp_path)
    assert "done: ddp on 2 ranks" in proc.stdout


@pytest.mark.slow
def test_trl_sft_with_the_example_config(tmp_path):
    model = chat_llama(tmp_path / "tiny")
    data = tmp_path / "tulu"
    data.mkdir()
    shutil.copy(data_dir() / "sft" / "tulu3_sft_mixture_sample.jsonl", data / "train.jsonl")
    out = tmp_path / "out"
    # the example's YAML as written; the command line swaps in the tiny model, the local rows and CPU settings
    _run(
        [
            BIN / "trl",
            "sft",
            "--config",
            EXAMPLES / "trl_sft.yaml",
            "--model_name_or_path",
            model,
            "--dataset_name",
            data,
            "--output_dir",
            out,
            "--max_steps",
            "2",
            "--save_steps",
            "2",
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "1",
            "--max_length",
            "128",
            "--bf16",
            "false",
            "--use_cpu",
            "true",
            "--dtype",
            "float32",
            "--learning_rate",
            "3e-3",
        ],
        cwd=tmp_path,
    )
    groups = muon_groups(out / "checkpoint-2" / "optimizer.pt")
    assert groups and all(g["ns_steps"] == 5 for g in groups)
