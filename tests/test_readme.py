"""The README and the documentation site say what the code does: the --optim_args table is generated from
MuonConfig, every documented shell command is run by a test or by CI, the quickstart runs, and the API page lists
every public name."""

import re

from conftest import REPO

import hf_muon
from hf_muon.config import OPTIM_ARGS, markdown_table

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "examples" / "README.md"]


def _text(path):
    return path.read_text(encoding="utf-8")


def test_optim_args_tables_match_muon_config():
    tables = 0
    for path in DOCS:
        text = _text(path)
        for table in re.findall(r"<!-- optim_args:start -->\n(.*?)\n<!-- optim_args:end -->", text, re.S):
            assert table == markdown_table(), f"{path.name}: regenerate with `hf-muon optim-args`"
            tables += 1
    assert tables >= 2  # the README's and the HF-stack guide's
    assert "adamw_fused" in OPTIM_ARGS and "lr" not in OPTIM_ARGS  # lr comes from TrainingArguments


# Every shell command in the README and the docs, by a signature it contains, and the files that run it (each must
# contain the signature's key token, so a file that stops running the command fails this check).
COVERED = {
    "make demo": ((".ci/run",), "make demo"),
    "make test": ((".ci/run",), "make test"),
    "make dist": ((".ci/run",), "make dist"),
    "pip install": (("tests/integrations/test_install.py",), "pip"),
    "hf-muon config": (("tests/examples/test_examples.py", "tests/integrations/test_install.py"), '"config"'),
    "examples/trainer.py --model_name_or_path": (("tests/examples/test_examples.py",), "trainer.py"),
    "python -m hf_muon.run examples/trainer.py": (("tests/examples/test_examples.py",), "hf_muon.run"),
    "trl sft --model_name_or_path": (
        ("tests/integrations/test_trl.py", "tests/integrations/test_install.py"),
        '"sft"',
    ),
    "trl sft --config examples/trl_sft.yaml": (("tests/examples/test_examples.py",), "trl_sft.yaml"),
    "python -m hf_muon.run -m trl.scripts.sft": (("tests/integrations/test_trl.py",), "trl.scripts.sft"),
    "examples/fsdp2_hsdp.py": (("tests/examples/test_examples.py",), "fsdp2_hsdp.py"),
    "accelerate launch": (
        ("tests/integrations/test_launcher.py", "tests/examples/test_examples.py"),
        "accelerate",
    ),
    "torchrun": (("tests/integrations/test_launcher.py", "tests/examples/test_examples.py"), "torchrun"),
    "hf-muon study": (("tests/lab/test_study.py",), '"hf_muon.cli", "study"'),
    "hf-muon score": (("tests/lab/test_lm_eval_parity.py",), "evaluation.cli import score"),
}


def _blocks(path, lang):
    return [m.group(2) for m in re.finditer(r"```(\w*)\n(.*?)```", _text(path), re.S) if m.group(1) == lang]


def _commands(path):
    lines = [ln.split("  #")[0].strip() for block in _blocks(path, "bash") for ln in block.splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith("--")]
    return [c for c in commands if not c.startswith("ACCELERATE_USE_CPU") or "accelerate launch" in c]


def test_every_documented_command_is_run_by_a_test():
    uncovered = [f"{p.relative_to(REPO)}: {c}" for p in DOCS for c in _commands(p) if not any(s in c for s in COVERED)]
    assert not uncovered, f"documented commands no test runs: {uncovered}"
    for sig, (files, token) in COVERED.items():
        for f in files:
            assert token in _text(REPO / f), f"{f} no longer runs `{sig}`"


def test_readme_quickstart_runs():
    block = next(b for b in _blocks(REPO / "README.md", "python") if b.startswith("import torch, hf_muon"))
    exec(compile(block, "README.md quickstart", "exec"), {})


def test_api_page_documents_every_public_name():
    documented = {m.split(".")[-1] for m in re.findall(r"^::: (\S+)$", _text(REPO / "docs" / "api.md"), re.M)}
    assert set(hf_muon.__all__) <= documented, sorted(set(hf_muon.__all__) - documented)


def test_readme_is_short_and_links_only_into_the_docs():
    text = _text(REPO / "README.md")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)", text)
    assert links and all(link.startswith("docs/") and (REPO / link).suffix == ".md" for link in links), links


def test_every_documented_python_block_parses():
    import ast

    for path in DOCS:
        for block in _blocks(path, "python"):
            ast.parse(block, filename=str(path.relative_to(REPO)))
