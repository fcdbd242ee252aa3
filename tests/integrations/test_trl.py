"""TRL SFT with Muon on the local tulu-3 sample: MuonSFTTrainer in-process, and `-m trl.scripts.sft` unmodified."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, child_env, data_dir, gpt2_tokenizer, llama_for, sft_args

_tokenizer = gpt2_tokenizer


def _model(tok):
    torch.manual_seed(0)
    return llama_for(tok, pad_token_id=tok.pad_token_id)


def _tulu():
    from datasets import load_dataset

    return load_dataset("json", data_files=str(data_dir() / "sft" / "tulu3_sft_mixture_sample.jsonl"), split="train")


def test_chat_template_marks_exactly_the_assistant_turns():
    tok = _tokenizer()
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    out = tok.apply_chat_template(msgs, return_assistant_tokens_mask=True, return_dict=True, tokenize=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    learned = tok.decode([i for i, m in zip(ids, mask) if m])
    assert learned == "Hello.<|endoftext|>4<|endoftext|>"
    text = tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True)
    assert text == "<|system|>\nBe brief.\n<|user|>\nHi?\n<|assistant|>\n"


def test_muon_sft_trainer_with_assistant_only_loss(tmp_path):
    from trl import SFTConfig

    import hf_muon

    tok = _tokenizer()
    args = SFTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=3e-3,
        max_length=128,
        assistant_only_loss=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = hf_muon.MuonSFTTrainer(
        model=_model(tok), args=args, train_dataset=_tulu().select(range(16)), processing_class=tok
    )
    row = trainer.train_dataset[0]
    learned = [i for i, lab in enumerate(row["labels"]) if lab != -100]
    assert 0 < len(learned) < len(row["input_ids"])  # prompt tokens are masked out of the loss
    assert tok.decode(row["input_ids"][: learned[0]]).endswith("<|assistant|>\n")
    trainer.train()
    assert isinstance(trainer.optimizer.optimizer, hf_muon.Muon)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)


def test_sft_trainer_peft_config_routes_lora_to_adamw(tmp_path):
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    tok = _tokenizer()
    args = SFTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        max_length=96,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        optim="muon",
        optim_args="lora_policy=b_only",
    )
    trainer = SFTTrainer(
        model=_model(tok),
        args=args,
        train_dataset=_tulu().select(range(8)),
        processing_class=tok,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    opt = trainer.optimizer.optimizer
    assert all("lora_B" in n for g in opt.param_groups if g["use_muon"] for n in g["param_names"])


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["launcher", "trl-cli", "trl-cli-config", "trl-cli-peft"])
def test_trl_sft_unmodified(tmp_path, entry):
    """`python -m hf_muon.run -m trl.scripts.sft`, the shipped `trl sft` command (which re-launches itself through
    accelerate in a new process: the startup hook registers there too), and `trl sft --config` with optim: muon."""
    tok = _tokenizer()
    model_dir, data = tmp_path / "tiny", tmp_path / "tulu"
    _model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data.mkdir()
    shutil.copy(data_dir() / "sft" / "tulu3_sft_mixture_sample.jsonl", data / "train.jsonl")
    out = tmp_path / "out"
    head = {
        "launcher": [sys.executable, "-m", "hf_muon.run", "-m", "trl.scripts.sft"],
        "trl-cli": [str(Path(sys.executable).parent / "trl"), "sft"],
        "trl-cli-config": [str(Path(sys.executable).parent / "trl"), "sft", "--config", str(tmp_path / "cfg.yaml")],
        "trl-cli-peft": [str(Path(sys.executable).parent / "trl"), "sft", "--use_peft", "--lora_r", "4"],
    }
    optim = ["--optim", "muon", "--optim_args", "ns_steps=5"]
    if entry == "trl-cli-config":
        (tmp_path / "cfg.yaml").write_text("optim: muon\noptim_args: ns_steps=5\n")
        optim = []
    cmd = [*head[entry], *sft_args(model_dir, data, out, steps=4, optim=None, assistant_only_loss="true"), *optim]
    env = child_env()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sd = torch.load(out / "checkpoint-4" / "optimizer.pt", weights_only=True)
    muon = [g for g in sd["param_groups"] if g["use_muon"]]
    assert muon and muon[0]["ns_steps"] == 5
    if entry == "trl-cli-peft":  # default settings: both LoRA factors on Muon, nothing else trainable there
        names = [n for g in muon for n in g["param_names"]]
        assert names and all("lora_A" in n or "lora_B" in n for n in names)
        assert any("lora_A" in n for n in names) and any("lora_B" in n for n in names)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
