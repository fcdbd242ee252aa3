"""A run_clm.py-style training script: HfArgumentParser + Trainer only, no hf_muon import.

It is what "an unmodified user script" means in the tests: `--optim muon` must reach it through
`python -m hf_muon.run`. It trains a tiny Llama built from a config on a local text file.
Test hook: HF_MUON_TEST_KILL_AT_STEP=N SIGKILLs the process right after the checkpoint of step N. The final weights,
gathered (DDP, FSDP; not under DeepSpeed), are written to ``OUTPUT_DIR/final.pt`` for the tests to compare.
"""

import json
import os
import signal
from dataclasses import dataclass, field

import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2TokenizerFast,
    HfArgumentParser,
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


@dataclass
class ScriptArguments:
    train_file: str = field(metadata={"help": "plain-text training file"})
    tokenizer_dir: str = field(metadata={"help": "directory with a GPT-2 tokenizer.json"})
    block_size: int = 32
    max_blocks: int = 256
    hidden_size: int = 32
    num_layers: int = 2
    model_dir: str = field(default="", metadata={"help": "load with from_pretrained (ZeRO-3: zero.Init, as HF does)"})


class KillAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    script_args, training_args = HfArgumentParser((ScriptArguments, TrainingArguments)).parse_args_into_dataclasses()
    print(
        f"rank {training_args.process_index} of {training_args.world_size}, device {training_args.device}"
    )  # as run_clm.py
    if training_args.deepspeed and training_args.use_cpu:
        # CPU only: accelerate initializes DeepSpeed's comm on GPU-type devices only, and ZeRO-3's zero.Init needs it
        import deepspeed

        deepspeed.comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    tok = GPT2TokenizerFast(tokenizer_file=os.path.join(script_args.tokenizer_dir, "tokenizer.json"))
    with open(script_args.train_file, encoding="utf-8") as f:
        ids = tok(f.read(200_000))["input_ids"]
    n = min(len(ids) // script_args.block_size, script_args.max_blocks)
    blocks = torch.tensor(ids[: n * script_args.block_size]).view(n, script_args.block_size)
    train = [{"input_ids": b, "labels": b} for b in blocks]
    torch.manual_seed(training_args.seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=script_args.hidden_size,
        intermediate_size=2 * script_args.hidden_size,
        num_hidden_layers=script_args.num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    if script_args.model_dir:
        model = AutoModelForCausalLM.from_pretrained(script_args.model_dir)
    else:
        model = LlamaForCausalLM(config)
    partitioned = any(hasattr(p, "ds_id") for p in model.parameters())  # zero.Init ran while loading
    callbacks = []
    if os.environ.get("HF_MUON_TEST_KILL_AT_STEP"):
        callbacks.append(KillAfterSave(int(os.environ["HF_MUON_TEST_KILL_AT_STEP"])))
    trainer = Trainer(model=model, args=training_args, train_dataset=train, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    if not training_args.deepspeed:  # ZeRO-3 gathers only with a config flag; the DeepSpeed tests read checkpoints
        full = trainer.accelerator.get_state_dict(trainer.model)  # every rank joins the gather FSDP needs
        if training_args.process_index == 0:
            weights = {k: v.detach().cpu() for k, v in full.items()}
            torch.save(weights, os.path.join(training_args.output_dir, "final.pt"))
    summary = {
        "optimizer": type(
            trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
        ).__name__,
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "world_size": training_args.world_size,
        "loaded_partitioned": partitioned,
        "dtensor_params": sum(type(q).__name__ == "DTensor" for q in trainer.model.parameters()),
    }
    if training_args.process_index == 0:
        with open(os.path.join(training_args.output_dir, "summary.json"), "w") as f:
            json.dump(summary, f)
    trainer.end()  # gloo can abort at interpreter exit while a process group is alive (pytorch#190489)


if __name__ == "__main__":
    main()
