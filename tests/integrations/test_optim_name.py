"""The optimizer's names: ``--optim hf_muon`` always hf_muon; ``--optim muon`` hf_muon while transformers has no
``muon``, and transformers' own if it ever ships one (simulated here), said at start-up; ``MuonTrainer`` records
what runs; a torch-only install names the extra."""

import subprocess
import sys

import torch
from conftest import REPO, child_env

import hf_muon


def _py(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(**env), cwd=REPO)


def test_hf_muon_name_selects_hf_muon_everywhere(tmp_path):
    from transformers import HfArgumentParser, Trainer, TrainingArguments

    (cli,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--optim",
            "hf_muon",
            "--optim_args",
            "ns_steps=4",
            "--use_cpu",
            "true",
        ]
    )
    assert cli.optim == "hf_muon"
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(cli, torch.nn.Linear(4, 4))
    assert cls.__name__ == "MuonFactory" and kwargs["optim_args"] == {"ns_steps": "4"}
    (tmp_path / "cfg.yaml").write_text(f"output_dir: {tmp_path}\noptim: hf_muon\n")
    assert HfArgumentParser(TrainingArguments).parse_yaml_file(str(tmp_path / "cfg.yaml"))[0].optim == "hf_muon"
    torch.save(cli, tmp_path / "training_args.bin")
    out = _py(
        f"import torch; a = torch.load({str(tmp_path / 'training_args.bin')!r}, weights_only=False); "
        "print(a.optim.value)"
    )
    assert out.returncode == 0 and out.stdout.strip() == "hf_muon", out.stderr[-2000:]


NATIVE = """
import logging, torch
logging.basicConfig()
from transformers import trainer_optimizer as to, training_args as ta
# a transformers release that ships its own "muon": an enum member and a handler of its own
member = str.__new__(ta.OptimizerNames, "muon"); member._name_, member._value_ = "MUON", "muon"
member.__objclass__ = ta.OptimizerNames
ta.OptimizerNames._member_map_["MUON"] = member; type.__setattr__(ta.OptimizerNames, "MUON", member)
ta.OptimizerNames._member_names_.append("MUON"); ta.OptimizerNames._value2member_map_["muon"] = member
def native(ctx):
    return torch.optim.SGD, {"lr": ctx.optimizer_kwargs["lr"]}
to._OPTIMIZER_HANDLERS[member] = native
import hf_muon
hf_muon.register()
from transformers import Trainer, TrainingArguments
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
for name in ("muon", "hf_muon"):
    args = TrainingArguments("/tmp/hf_muon_name_out", optim=name, use_cpu=True, report_to=[])
    cls, kw = Trainer.get_optimizer_cls_and_kwargs(args, model)
    print(f"--optim {name} -> {cls.__name__}")
print("handler kept:", to._OPTIMIZER_HANDLERS["muon"] is native)
"""


def test_a_transformers_muon_is_neither_overridden_nor_broken():
    out = _py(NATIVE, HF_MUON_AUTOREGISTER="0")
    assert out.returncode == 0, out.stderr[-3000:]
    print(out.stdout + out.stderr)
    assert "--optim muon -> SGD" in out.stdout and "--optim hf_muon -> MuonFactory" in out.stdout
    assert "handler kept: True" in out.stdout
    assert "--optim muon runs transformers' own Muon" in out.stderr and "--optim hf_muon" in out.stderr


def test_muon_is_hf_muon_while_transformers_has_none(tmp_path, caplog):
    from transformers import Trainer, TrainingArguments

    from hf_muon.integrations.transformers import native_muon, selects_hf_muon

    assert not native_muon() and selects_hf_muon("muon") and selects_hf_muon("hf_muon")
    with caplog.at_level("WARNING", logger="hf_muon"):
        args = TrainingArguments(str(tmp_path), optim="muon", use_cpu=True, report_to=[])
    assert "transformers' own Muon" not in caplog.text
    assert Trainer.get_optimizer_cls_and_kwargs(args, torch.nn.Linear(4, 4))[0].__name__ == "MuonFactory"


def test_muon_trainer_records_the_optimizer_that_runs(tmp_path):
    from conftest import tiny_llama
    from transformers import TrainingArguments

    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to=[], optim="adamw_torch", optim_args="foo=1")
    trainer = hf_muon.MuonTrainer(model=tiny_llama(), args=args, train_dataset=[])
    assert trainer.args.optim == "hf_muon"
    trainer.create_optimizer()
    assert isinstance(trainer.optimizer, hf_muon.Muon)  # adamw's optim_args were not read as hf_muon's


def test_torch_only_install_names_the_extra(tmp_path):
    block = "import sys; sys.modules['transformers'] = None; sys.modules['trl'] = None; "
    trainer = _py(block + "import hf_muon; hf_muon.MuonTrainer", HF_MUON_AUTOREGISTER="0")
    assert trainer.returncode != 0 and 'pip install "hf_muon[hf]"' in trainer.stderr
    sft = _py(block + "import hf_muon; hf_muon.MuonSFTTrainer", HF_MUON_AUTOREGISTER="0")
    assert sft.returncode != 0 and "pip install" in sft.stderr
    (tmp_path / "s.py").write_text("print('ran')\n")
    run = _py(block + f"from hf_muon.run import main; main([{str(tmp_path / 's.py')!r}])", HF_MUON_AUTOREGISTER="0")
    assert run.returncode == 1 and 'pip install "hf_muon[hf]"' in run.stderr and "ran" not in run.stdout
