"""Training units of the study: pretraining runs and sweeps (stage 1), SFT runs and per-cell lr grids (stage 2).

Both stages pick learning rates with :func:`hf_muon.lab.study.sweep.run_sweep` (the best validation loss, the
grid extended past an edge optimum). Pretraining selects on the pretraining validation blocks; SFT selects on the
SFT **validation** slice only (:mod:`~hf_muon.lab.study.sftdata`), never on the test slice the report shows.

SFT is a plain ``transformers.Trainer`` on pre-tokenized rows (labels −100 outside the assistant tokens: the
assistant-only loss of TRL's ``assistant_only_loss=True``, tokenized once per study instead of once per run).
Cell variants: ``lora`` (peft LoRA on all linear layers; Muon takes ``lora_policy``), ``p_half``
(``spectral_power=0.5``), ``warm_start`` (Muon's momentum from the base's AdamW ``exp_avg``,
:mod:`~hf_muon.lab.study.warmstart`), ``lr_half`` / ``lr_quarter`` (no grid: ½ and ¼ of the tuned lr of the
same base and SFT optimizer's plain cell).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .sweep import run_sweep
from .units import LR_FACTORS, done, mark
from .warmstart import STATE_FILE, load_first_moments, save_optimizer_state, warm_start_momentum


def lr_tag(lr: float) -> str:
    return f"{lr:g}"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _optim(name: str) -> str:
    return "muon" if name == "muon" else "adamw_torch"


def _last_checkpoint(out: Path):
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out)) if out.exists() else None


def _save(trainer, tok, out: Path):
    trainer.save_model(str(out / "model"))
    tok.save_pretrained(str(out / "model"))
    for ck in out.glob("checkpoint-*"):
        shutil.rmtree(ck, ignore_errors=True)


def _trainer_class():
    from transformers import Trainer

    class StudyTrainer(Trainer):
        """A Trainer that can warm-start Muon's momentum right after it builds the optimizer (before a checkpoint
        resume loads its saved state over it)."""

        warm_moments = None
        warm_count = 0

        def create_optimizer(self, *args, **kwargs):
            opt = super().create_optimizer(*args, **kwargs)
            if self.warm_moments is not None:
                self.warm_count = warm_start_momentum(self.optimizer, self.model, self.warm_moments)
            return opt

    return StudyTrainer


def new_model(cfg, tok, seed: int):
    """The study's Llama from ``cfg.model`` (:func:`hf_muon.lab.models.build_llama`), initialised from ``seed``."""
    from ..models import build_llama

    m = cfg.model
    return build_llama(
        m.hidden_size,
        m.num_hidden_layers,
        len(tok),
        m.max_position_embeddings,
        heads=m.num_attention_heads,
        kv_heads=m.num_key_value_heads,
        intermediate_size=m.intermediate_size,
        tie_word_embeddings=m.tie_word_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------- stage 1
def pretrain_run(cfg, tok, data, seed: int, opt: str, lr: float, steps: int, out: Path) -> dict:
    """One pretraining run; saves the model and the optimizer state (``optimizer_state.pt``) beside it."""
    if (info := done(out)) is not None:
        return info
    from transformers import TrainingArguments

    import hf_muon  # noqa: F401  (registers optim="muon")

    train, val = data
    args = TrainingArguments(
        output_dir=str(out),
        optim=_optim(opt),
        learning_rate=lr,
        max_steps=steps,
        seed=seed,
        data_seed=seed,
        per_device_train_batch_size=cfg.pretrain.batch_size,
        per_device_eval_batch_size=cfg.pretrain.batch_size,
        warmup_steps=cfg.pretrain.warmup_ratio,
        lr_scheduler_type="cosine",
        weight_decay=cfg.pretrain.weight_decay,
        logging_steps=max(1, steps // 20),
        save_strategy="steps",
        save_steps=max(1, steps // 2),
        save_total_limit=1,
        report_to=[],
        max_grad_norm=1.0,
        use_cpu=not _cuda(),
        bf16=_cuda(),
        dataloader_num_workers=0,
    )
    trainer = _trainer_class()(model=new_model(cfg, tok, seed), args=args, train_dataset=train, eval_dataset=val)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    val_loss = trainer.evaluate()["eval_loss"]
    _save(trainer, tok, out)
    save_optimizer_state(trainer.optimizer, trainer.model, out / STATE_FILE)
    return mark(
        out,
        {
            "kind": "pretrain",
            "optimizer": opt,
            "lr": lr,
            "steps": steps,
            "seed": seed,
            "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, 50)),
            "train_seconds": time.time() - t0,
            "tokens": steps * cfg.pretrain.batch_size * cfg.pretrain.block_size,
            "log_history": trainer.state.log_history,
            "model_dir": str(out / "model"),
            "optimizer_state": str(out / STATE_FILE),
        },
    )


def pretrain(cfg, tok, data, seed: int, opt: str, root: Path, log: Callable) -> dict:
    """The lr sweep (short runs unless ``sweep_steps`` is unset, extended past an edge optimum), then the base."""
    base = root / f"seed{seed}" / f"base-{opt}"
    if (info := done(base)) is not None:
        return info
    sweep_steps = cfg.pretrain.sweep_steps or cfg.pretrain.steps
    runs: dict[float, dict] = {}

    def run(lr: float) -> float:
        log(f"[pretrain] seed {seed} {opt} lr {lr:g} ({sweep_steps} steps)")
        runs[lr] = pretrain_run(
            cfg, tok, data, seed, opt, lr, sweep_steps, root / f"seed{seed}" / f"sweep-{opt}-lr{lr_tag(lr)}"
        )
        return runs[lr]["val_loss"]

    res = run_sweep(cfg.pretrain.lrs[opt], run, cfg.pretrain.max_extensions, lambda m: log(f"[pretrain] {opt}: {m}"))
    best = res["chosen_lr"]
    if sweep_steps == cfg.pretrain.steps:
        info = dict(runs[best])
    else:
        log(f"[pretrain] seed {seed} {opt} base at lr {best:g} ({cfg.pretrain.steps} steps)")
        info = pretrain_run(cfg, tok, data, seed, opt, best, cfg.pretrain.steps, base / "run")
    info.update(
        sweep={lr_tag(lr): v for lr, v in res["losses"].items()},
        chosen_lr=best,
        extended=res["extended"],
        at_edge=res["at_edge"],
        grid=res["grid"],
    )
    for r in runs.values():  # only the chosen base's optimizer state is needed later
        if r.get("optimizer_state") != info.get("optimizer_state"):
            Path(r["optimizer_state"]).unlink(missing_ok=True)
    return mark(base, info)


# --------------------------------------------------------------------------------------------- stage 2
def sft_run(
    cfg, tok, data: dict, seed: int, base_info: dict, opt: str, variant: str, lr: float, steps: int | None, out: Path
) -> dict:
    """One SFT run at ``lr`` (``steps``: a short grid run; None: ``sft.max_steps`` or ``sft.epochs``); the
    validation-slice loss and accuracy are measured at its end."""
    if (info := done(out)) is not None:
        return info
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainingArguments

    import hf_muon  # noqa: F401

    from .heldout import token_metrics
    from .sftdata import PadCollator

    s = cfg.sft
    model = AutoModelForCausalLM.from_pretrained(base_info["model_dir"])
    optim_args = None
    if variant == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=s.lora_r, lora_alpha=2 * s.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
        )
        optim_args = f"lora_policy={s.lora_policy}" if opt == "muon" else None
    elif variant == "p_half":
        optim_args = "spectral_power=0.5"
    max_steps = steps or s.max_steps or -1
    args = TrainingArguments(
        output_dir=str(out),
        optim=_optim(opt),
        optim_args=optim_args,
        learning_rate=lr,
        seed=seed,
        data_seed=seed,
        num_train_epochs=s.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=s.batch_size,
        warmup_steps=s.warmup_ratio,
        lr_scheduler_type=s.lr_scheduler,
        weight_decay=s.weight_decay,
        logging_steps=1,
        save_strategy="epoch",
        save_total_limit=1,
        report_to=[],
        bf16=_cuda(),
        use_cpu=not _cuda(),
        max_grad_norm=1.0,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(data["train"]),
        data_collator=PadCollator(tok.pad_token_id),
    )
    if variant == "warm_start":
        trainer.warm_moments = load_first_moments(base_info["optimizer_state"])
    t0 = time.time()
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    if variant == "lora":
        trainer.model = trainer.model.merge_and_unload()
    val = token_metrics(trainer.model, data["val"], batch_size=max(s.batch_size, 8))
    _save(trainer, tok, out)
    return mark(
        out,
        {
            "kind": "sft",
            "pretrain_optimizer": base_info["optimizer"],
            "sft_optimizer": opt,
            "variant": variant,
            "lora": variant == "lora",
            "lr": lr,
            "seed": seed,
            "train_rows": len(data["train"]),
            "train_seconds": time.time() - t0,
            "steps": trainer.state.global_step,
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "warm_started": trainer.warm_count,
            "log_history": trainer.state.log_history,
            "model_dir": str(out / "model"),
            "base_model_dir": base_info["model_dir"],
        },
    )


def sft_cell(
    cfg, tok, data: dict, seed: int, base_info: dict, opt: str, variant: str, out: Path, tuned: dict, log: Callable
) -> dict:
    """One SFT cell: its lr grid (``sft.lrs``, or ``sft.lora_lrs`` for LoRA), selection on the validation slice,
    then the final run at the chosen lr when the grid runs were short (``sft.sweep_steps``). ``tuned`` maps
    ``(base, opt, variant)`` to finished cells (the lr-scaled remedies read their reference lr from it)."""
    if (info := done(out)) is not None:
        return info
    s, base = cfg.sft, base_info["optimizer"]
    name = f"{base} / {opt}" + (f" [{variant}]" if variant else "")
    if variant in LR_FACTORS:
        ref = tuned[(base, opt, "")]
        lr = float(f"{ref['chosen_lr'] * LR_FACTORS[variant]:.4g}")
        log(f"[sft] seed {seed} {name} lr {lr:g} ({LR_FACTORS[variant]:g} × tuned {ref['chosen_lr']:g})")
        info = dict(sft_run(cfg, tok, data, seed, base_info, opt, variant, lr, None, out / f"lr{lr_tag(lr)}"))
        info.update(
            chosen_lr=lr,
            sweep={lr_tag(lr): info["val_loss"]},
            extended=[],
            at_edge=False,
            grid=[lr],
            derived_from={"lr": ref["chosen_lr"], "factor": LR_FACTORS[variant]},
        )
        return mark(out, info)
    grids = s.lora_lrs if (variant == "lora" and s.lora_lrs) else s.lrs
    runs: dict[float, dict] = {}

    def run(lr: float) -> float:
        log(f"[sft] seed {seed} {name} lr {lr:g}" + (f" ({s.sweep_steps} grid steps)" if s.sweep_steps else ""))
        runs[lr] = sft_run(cfg, tok, data, seed, base_info, opt, variant, lr, s.sweep_steps, out / f"lr{lr_tag(lr)}")
        return runs[lr]["val_loss"]

    res = run_sweep(grids[opt], run, s.max_extensions, lambda m: log(f"[sft] {name}: {m}"))
    best = res["chosen_lr"]
    if s.sweep_steps is None:
        info = dict(runs[best])
    else:
        log(f"[sft] seed {seed} {name} final run at lr {best:g}")
        info = dict(sft_run(cfg, tok, data, seed, base_info, opt, variant, best, None, out / "final"))
    info.update(
        chosen_lr=best,
        sweep={lr_tag(lr): v for lr, v in res["losses"].items()},
        extended=res["extended"],
        at_edge=res["at_edge"],
        grid=res["grid"],
    )
    info = mark(out, info)
    for r in runs.values():  # the losing grid runs' weights are not needed (their DONE.json stays)
        if r["model_dir"] != info["model_dir"]:
            shutil.rmtree(r["model_dir"], ignore_errors=True)
    return info


__all__ = ["lr_tag", "new_model", "pretrain", "pretrain_run", "sft_cell", "sft_run"]
