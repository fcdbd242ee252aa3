"""Install-level: a fresh virtualenv with hf_muon installed from this repo (as a wheel, and editable), then what
the README and the docs tell a pip user to run, from outside the checkout: the `hf-muon` command (the shipped
launcher configs, the optim_args table, an unknown command), `examples/` scripts copied out of the repository, the
real entry points with `--optim muon` and nothing imported by hand (an unmodified HfArgumentParser + Trainer
script, TRL's `trl sft` command, which re-launches itself through `accelerate launch`), `torch.load` of
`training_args.bin`, and the startup hook switched off.

The fresh venv sees the dependencies of the project venv through a path file (torch, transformers, trl are not
downloaded again), but not its hf_muon: only the install under test provides hf_muon and its startup file.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, chat_llama, child_env, data_dir, example_trainer_args, muon_groups, sft_args

from benchmarks.bench_startup import bare_venv, build_wheel, install_into

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"


def _env(**extra):
    return child_env(PYTHONPATH=None, VIRTUAL_ENV=None, **extra)  # the fresh venv sees no checkout


def _run(cmd, cwd, **env):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(**env), cwd=cwd, timeout=600)


@pytest.fixture(scope="module", params=["wheel", "editable"])
def fresh(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    py, purelib = bare_venv(root)
    if request.param == "wheel":
        install_into(py, root, build_wheel(root))
    else:
        install_into(py, root, "-e", REPO)
    assert (Path(purelib) / "hf_muon-autoregister.pth").exists()
    return py, root


def test_hf_muon_command(fresh, tmp_path):
    py, root = fresh
    hf_muon = py.parent / "hf-muon"
    listing = _run([hf_muon, "config"], cwd=tmp_path)
    assert listing.returncode == 0 and all(n in listing.stdout for n in ("ddp.yaml", "fsdp2.yaml", "hsdp.yaml"))
    for name in ("ddp", "fsdp2", "hsdp"):
        wrote = _run([hf_muon, "config", name, "--out", tmp_path / f"{name}.yaml"], cwd=tmp_path)
        assert wrote.returncode == 0, wrote.stderr[-2000:]
        shipped = (REPO / "hf_muon" / "configs" / f"{name}.yaml").read_text()
        assert (tmp_path / f"{name}.yaml").read_text() == shipped
    table = _run([hf_muon, "optim-args"], cwd=tmp_path)
    assert table.returncode == 0 and "| `ns_steps` |" in table.stdout
    bogus = _run([hf_muon, "bogus"], cwd=tmp_path)
    assert bogus.returncode == 2 and "unknown command 'bogus'" in bogus.stderr and "usage:" in bogus.stderr


def test_examples_copied_out_of_the_checkout(fresh, tmp_path):
    py, root = fresh
    for name in ("plain_loop.py", "trainer.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    plain = _run([py, tmp_path / "plain_loop.py", "--steps", "3", "--out", tmp_path / "plain"], cwd=tmp_path)
    assert plain.returncode == 0 and "saved and reloaded" in plain.stdout, plain.stderr[-3000:]
    # the documented Trainer command, with --optim muon reaching the unmodified script through the startup hook
    args = example_trainer_args(chat_llama(tmp_path / "tiny"), tmp_path / "out")
    proc = _run([py, tmp_path / "trainer.py", *args], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert muon_groups(tmp_path / "out" / "checkpoint-2" / "optimizer.pt")
    assert "on Muon" in proc.stderr and (tmp_path / "out" / "hf_muon_routing.txt").exists()
    # training_args.bin in a fresh interpreter that never imports hf_muon
    code = (
        f"import torch; a = torch.load({str(tmp_path / 'out' / 'checkpoint-2' / 'training_args.bin')!r}, "
        "weights_only=False); print(a.optim.value)"
    )
    out = _run([py, "-c", code], cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "muon", out.stderr[-2000:]
    # the hook off: today's behaviour without the launcher
    off = _run([py, tmp_path / "trainer.py", *args], cwd=tmp_path, HF_MUON_AUTOREGISTER="0")
    assert off.returncode != 0 and "invalid choice: 'muon'" in off.stderr


def test_import_transformers_alone_imports_nothing_heavy_of_hf_muon(fresh):
    py, root = fresh
    code = "import sys, transformers; print(sorted(m for m in sys.modules if m.startswith(('hf_muon', 'torch'))))"
    out = _run([py, "-c", code], cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.replace("'", '"')) == []


@pytest.mark.parametrize("how", ["flags", "peft", "config"])
def test_trl_sft_command(fresh, tmp_path, how):
    py, root = fresh
    model_dir, data = chat_llama(tmp_path / "tiny"), tmp_path / "tulu"
    data.mkdir()
    shutil.copy(data_dir() / "sft" / "tulu3_sft_mixture_sample.jsonl", data / "train.jsonl")
    trl = [py, "-c", "import sys; sys.argv[0] = 'trl'; from trl.cli import main; sys.exit(main())", "sft"]
    out = tmp_path / "out"
    extra = {
        "flags": [],
        "peft": ["--use_peft", "--lora_r", "4"],
        "config": ["--config", tmp_path / "cfg.yaml"],
    }[how]
    (tmp_path / "cfg.yaml").write_text("optim: muon\n")
    optim = None if how == "config" else "muon"
    proc = _run(
        [*trl, *extra, *sft_args(model_dir, data, out, optim=optim)],
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    groups = muon_groups(out / "checkpoint-2" / "optimizer.pt")
    assert groups
    if how == "peft":  # default settings: the LoRA factors are what Muon updates
        assert all("lora_" in n for g in groups for n in g["param_names"])
