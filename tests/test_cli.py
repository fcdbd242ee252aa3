"""`hf-muon`: unknown commands, missing extras named at dispatch, the shipped launcher configs, the optim_args table."""

import importlib.util

import pytest
from conftest import REPO

from hf_muon import cli
from hf_muon.config import markdown_table


def test_unknown_command_says_so_with_usage(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unknown command 'bogus'" in err and "usage: hf-muon COMMAND" in err


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0 and "config [NAME [--out PATH]]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "module", "extra"),
    [("plot", "matplotlib", "study"), ("run", "transformers", "hf"), ("study", "datasets", "study")],
)
def test_a_missing_extra_is_named(monkeypatch, capsys, command, module, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(SystemExit) as e:
        cli.main([command, "x"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and module in err and f'pip install "hf_muon[{extra}]"' in err


def test_config_lists_prints_and_writes_the_shipped_files(capsys, tmp_path):
    shipped = sorted(p.name for p in (REPO / "hf_muon" / "configs").iterdir() if p.suffix in (".yaml", ".json"))
    assert {"ddp.yaml", "fsdp2.yaml", "hsdp.yaml"} <= set(shipped) and cli.config_names() == shipped
    cli.main(["config"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in shipped)
    cli.main(["config", "fsdp2"])
    assert capsys.readouterr().out == (REPO / "hf_muon" / "configs" / "fsdp2.yaml").read_text()
    cli.main(["config", "hsdp.yaml", "--out", str(tmp_path / "sub" / "h.yaml")])
    assert (tmp_path / "sub" / "h.yaml").read_text() == (REPO / "hf_muon" / "configs" / "hsdp.yaml").read_text()
    with pytest.raises(SystemExit, match="unknown config 'nope'; shipped: ddp.yaml"):
        cli.main(["config", "nope"])


def test_optim_args_prints_and_updates_the_table(capsys, tmp_path):
    cli.main(["optim-args"])
    assert capsys.readouterr().out == markdown_table() + "\n"
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- optim_args:start -->\nold\n<!-- optim_args:end -->\nafter\n")
    cli.main(["optim-args", "--update", str(doc)])
    assert doc.read_text() == f"before\n<!-- optim_args:start -->\n{markdown_table()}\n<!-- optim_args:end -->\nafter\n"
    with pytest.raises(SystemExit, match="no <!-- optim_args"):
        cli.main(["optim-args", "--update", str(tmp_path / "doc.md"), str(REPO / "CHANGELOG.md")])
