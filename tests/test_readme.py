"""The README's --optim_args table is generated from MuonConfig and must stay equal to it."""

from conftest import REPO

from hf_muon.config import OPTIM_ARGS, markdown_table


def test_readme_optim_args_table_matches_muon_config():
    text = (REPO / "README.md").read_text()
    table = text.split("<!-- optim_args:start -->\n", 1)[1].split("\n<!-- optim_args:end -->", 1)[0]
    assert table == markdown_table(), "regenerate with `python -m hf_muon.config`"
    assert "adamw_fused" in OPTIM_ARGS and "lr" not in OPTIM_ARGS  # lr comes from TrainingArguments


# Every shell command in the README, by a signature it contains, and the test files that run it (each must contain
# the signature's key token, so a test that stops running the command fails this check).
COVERED = {
    "make demo": (".ci/run",),
    "make test": (".ci/run",),
    "tests/scripts/train_clm.py --optim muon": ("tests/integrations/test_launcher.py", "tests/integrations/test_install.py"),
    "trl sft --model_name_or_path": ("tests/integrations/test_trl.py", "tests/integrations/test_install.py"),
    "trl sft --config": ("tests/integrations/test_trl.py",),
    "python -m hf_muon.run tests/scripts/train_clm.py": ("tests/integrations/test_launcher.py",),
    "python -m hf_muon.run -m trl.scripts.sft": ("tests/integrations/test_trl.py",),
    "accelerate launch": ("tests/integrations/test_launcher.py",),
    "torchrun": ("tests/integrations/test_launcher.py",),
    "tests/scripts/dist_train.py --mode": ("tests/optim/dist_helpers.py",),
}
KEY_TOKEN = {"make demo": "make demo", "make test": "make test", "trl sft --config": "--config",
             "trl sft --model_name_or_path": '"sft"', "accelerate launch": "accelerate",
             "python -m hf_muon.run tests/scripts/train_clm.py": "hf_muon.run",
             "python -m hf_muon.run -m trl.scripts.sft": "trl.scripts.sft", "torchrun": "torchrun",
             "tests/scripts/train_clm.py --optim muon": "train_clm.py", "tests/scripts/dist_train.py --mode": "--mode"}


def _blocks(lang):
    import re

    text = (REPO / "README.md").read_text()
    return [m.group(2) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S) if m.group(1) == lang]


def test_every_readme_command_is_run_by_a_test():
    lines = [ln.split("  #")[0].strip() for block in _blocks("bash") for ln in block.splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith("--")]
    commands = [c for c in commands if not c.startswith("ACCELERATE_USE_CPU") or "accelerate launch" in c]
    uncovered = [c for c in commands if not any(sig in c for sig in COVERED)]
    assert not uncovered, f"README commands no test runs: {uncovered}"
    for sig, files in COVERED.items():
        for f in files:
            assert KEY_TOKEN[sig] in (REPO / f).read_text(), f"{f} no longer runs `{sig}`"


def test_readme_quickstart_runs():
    block = next(b for b in _blocks("python") if b.startswith("import torch, hf_muon"))
    exec(compile(block, "README.md quickstart", "exec"), {})
