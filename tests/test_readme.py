"""The README's --optim_args table is generated from MuonConfig and must stay equal to it."""

from conftest import REPO

from hf_muon.config import OPTIM_ARGS, markdown_table


def test_readme_optim_args_table_matches_muon_config():
    text = (REPO / "README.md").read_text()
    table = text.split("<!-- optim_args:start -->\n", 1)[1].split("\n<!-- optim_args:end -->", 1)[0]
    assert table == markdown_table(), "regenerate with `python -m hf_muon.config`"
    assert "adamw_fused" in OPTIM_ARGS and "lr" not in OPTIM_ARGS  # lr comes from TrainingArguments
