"""A run_clm.py-style script: HfArgumentParser + Trainer, no hf_muon import. `--optim muon` selects Muon.

    pip install "hf_muon[hf]"        # (from a checkout or a built wheel)
    python examples/trainer.py --model_name_or_path MODEL_DIR --train_file train.txt --output_dir out \\
        --optim muon --optim_args "ns_steps=5" --learning_rate 3e-4 --max_steps 100

Installing hf_muon installs a startup hook that makes `muon` a valid `--optim` the moment transformers parses its
arguments, so this file does not import hf_muon. Where startup files are off (`python -S`,
HF_MUON_AUTOREGISTER=0) run it as `python -m hf_muon.run examples/trainer.py ...`. `--optim_args` takes the keys of
`hf-muon optim-args`; lr, weight decay, betas and eps come from TrainingArguments as for AdamW.
"""

from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser, Trainer, TrainingArguments


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "a causal LM (Hub id or local folder with its tokenizer)"})
    train_file: str = field(metadata={"help": "a plain-text file"})
    block_size: int = 128
    max_chars: int = 1_000_000


def blocks(tokenizer, path: str, size: int, max_chars: int) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        ids = tokenizer(f.read(max_chars))["input_ids"]
    n = len(ids) // size
    chunks = torch.tensor(ids[: n * size]).view(n, size)
    return [{"input_ids": c, "labels": c} for c in chunks]


def main():
    script, args = HfArgumentParser((ScriptArguments, TrainingArguments)).parse_args_into_dataclasses()
    tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(script.model_name_or_path)
    train = blocks(tokenizer, script.train_file, script.block_size, script.max_chars)
    trainer = Trainer(model=model, args=args, train_dataset=train)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    trainer.end()  # frees the process group; CPU/gloo runs can abort at exit otherwise


if __name__ == "__main__":
    main()
