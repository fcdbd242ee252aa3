"""The pretraining-vs-SFT optimizer-mismatch study (Moonlight, arXiv 2502.16982, Table 6), as four stages.

1. **pretrain** — per seed and optimizer (AdamW, Muon): an lr sweep declared in the config (short runs,
   best validation loss wins), then the base model at the chosen lr (the sweep run itself when
   ``sweep_steps`` is unset). Same architecture, data, token budget and seed for both optimizers.
2. **sft** — every base × every SFT optimizer on tulu-3-sft-mixture (assistant-only loss, Tulu chat
   template), held-out rows excluded; optionally LoRA variants.
3. **score** — every base and SFT model: the configured benchmark tasks, held-out SFT loss and
   pretraining validation perplexity (:func:`hf_muon.lab.evaluation.evaluate_model`).
4. **report** — Table-6-style table (mean ± std over seeds), PNG plots, markdown, model cards.

Each unit of work writes ``DONE.json`` when it finishes and is skipped on a re-run; a unit killed midway
resumes from its last Trainer checkpoint. Layout under ``output_dir``::

    seed{S}/sweep-{opt}-lr{lr}/   seed{S}/base-{opt}/   seed{S}/sft-{base}-{opt}[-lora]/   report/
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..data import resolve_data_dir
from .config import StudyConfig, to_dict
from .report import write_report
from .units import done, mark, model_units

STAGES = ("pretrain", "sft", "score", "report")


# --------------------------------------------------------------------------------------------- helpers
def _lr_tag(lr: float) -> str:
    return f"{lr:g}"


def load_tokenizer(cfg: StudyConfig):
    """GPT-2 BPE (mirror or Hub) with the Tulu chat template; the base checkpoint's own in base_model mode."""
    from ..chat import prepare_chat_tokenizer

    if cfg.model.base_model:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(cfg.model.base_model)
    else:
        from ..data import load_tokenizer as gpt2

        tok = gpt2(resolve_data_dir(cfg.data_dir))
    return prepare_chat_tokenizer(tok)


def pretrain_blocks(cfg: StudyConfig, tok):
    """(train, val) causal-LM blocks of the pretraining corpus: mirror file, or the Hub with the same schema."""
    from ..data import corpus_path, lm_blocks, load_documents, train_val_split

    spec, root = cfg.pretrain, resolve_data_dir(cfg.data_dir)
    docs = None
    if root is not None:
        try:
            corpus_path(root, spec.corpus)
            docs = load_documents(root, spec.corpus)
        except (FileNotFoundError, ValueError):
            docs = None
    if docs is None:
        docs = _hub_documents(spec.corpus, spec.max_tokens)
    ds = lm_blocks(tok, docs, block_size=spec.block_size, max_tokens=spec.max_tokens)
    return train_val_split(ds, val_fraction=spec.val_fraction)


_HUB_CORPORA = {
    "tinystories": ("roneneldan/TinyStories", None, "train"),
    "c4": ("allenai/c4", "en", "train"),
    "wikitext2": ("Salesforce/wikitext", "wikitext-2-raw-v1", "train"),
    "fineweb-edu": ("HuggingFaceFW/fineweb-edu", "sample-10BT", "train"),
    "tinyshakespeare": ("karpathy/tiny_shakespeare", None, "train"),
}


def _hub_documents(corpus: str, max_tokens: int | None) -> list[str]:
    from datasets import load_dataset

    name, config, split = _HUB_CORPORA[corpus]
    stream = load_dataset(name, config, split=split, streaming=True)
    docs, chars = [], 0
    budget = (max_tokens or 50_000_000) * 5  # ~4-5 characters per GPT-2 token
    for row in stream:
        text = row.get("text") or ""
        if text.strip():
            docs.append(text)
            chars += len(text)
        if chars >= budget:
            break
    return docs


def sft_rows(cfg: StudyConfig):
    """Valid tulu rows split into (train, heldout) plus the load report (malformed rows counted, skipped)."""
    from ..evaluation.sft_loss import SOURCES, parse_row, split_indices
    from ..evaluation.sources import HubSpec, load_rows

    rel = cfg.sft.mirror_file or SOURCES["tulu3_sft"][0]
    hub = HubSpec(cfg.sft.dataset, None, "train", cfg.sft.max_rows)  # the whole mixture unless max_rows is set
    rows, report = load_rows("sft", parse_row, data_dir=cfg.data_dir, rel_path=rel, hub=hub,
                             local=cfg.sft.mirror_file is not None)
    train = [rows[i] for i in split_indices(len(rows), "train", cfg.sft.heldout_fraction)]
    held = [rows[i] for i in split_indices(len(rows), "heldout", cfg.sft.heldout_fraction)]
    return train, held, report


def _new_model(cfg: StudyConfig, tok, seed: int):
    """The study's Llama from ``cfg.model`` (:func:`hf_muon.lab.models.build_llama`), initialised from ``seed``."""
    from ..models import build_llama

    m = cfg.model
    return build_llama(m.hidden_size, m.num_hidden_layers, len(tok), m.max_position_embeddings,
                       heads=m.num_attention_heads, kv_heads=m.num_key_value_heads,
                       intermediate_size=m.intermediate_size, tie_word_embeddings=m.tie_word_embeddings,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       seed=seed)


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


# --------------------------------------------------------------------------------------------- stage 1
def pretrain_run(cfg: StudyConfig, tok, data, seed: int, opt: str, lr: float, steps: int, out: Path) -> dict:
    from transformers import Trainer, TrainingArguments

    if (info := done(out)) is not None:
        return info
    import hf_muon  # noqa: F401  (registers optim="muon")

    train, val = data
    args = TrainingArguments(
        output_dir=str(out), optim=_optim(opt), learning_rate=lr, max_steps=steps, seed=seed, data_seed=seed,
        per_device_train_batch_size=cfg.pretrain.batch_size, per_device_eval_batch_size=cfg.pretrain.batch_size,
        warmup_steps=cfg.pretrain.warmup_ratio, lr_scheduler_type="cosine", weight_decay=cfg.pretrain.weight_decay,
        logging_steps=max(1, steps // 20), save_strategy="steps", save_steps=max(1, steps // 4), save_total_limit=1,
        report_to=[], max_grad_norm=1.0, use_cpu=not _cuda(), bf16=_cuda(), dataloader_num_workers=0,
    )
    trainer = Trainer(model=_new_model(cfg, tok, seed), args=args, train_dataset=train, eval_dataset=val)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    val_loss = trainer.evaluate()["eval_loss"]
    _save(trainer, tok, out)
    return mark(out, {"kind": "pretrain", "optimizer": opt, "lr": lr, "steps": steps, "seed": seed,
                       "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50)), "train_seconds": time.time() - t0,
                       "tokens": steps * cfg.pretrain.batch_size * cfg.pretrain.block_size,
                       "log_history": trainer.state.log_history, "model_dir": str(out / "model")})


def pretrain(cfg: StudyConfig, tok, data, seed: int, opt: str, root: Path, log: Callable) -> dict:
    """lr sweep (short runs), then the base model at the best lr."""
    base = root / f"seed{seed}" / f"base-{opt}"
    if (info := done(base)) is not None:
        return info
    sweep_steps = cfg.pretrain.sweep_steps or cfg.pretrain.steps
    sweep = {}
    for lr in cfg.pretrain.lrs[opt]:
        run = root / f"seed{seed}" / f"sweep-{opt}-lr{_lr_tag(lr)}"
        log(f"[pretrain] seed {seed} {opt} lr {lr:g} ({sweep_steps} steps)")
        sweep[lr] = pretrain_run(cfg, tok, data, seed, opt, lr, sweep_steps, run)
    best_lr = min(sweep, key=lambda lr: sweep[lr]["val_loss"] if math.isfinite(sweep[lr]["val_loss"]) else 1e9)
    if sweep_steps == cfg.pretrain.steps:
        info = dict(sweep[best_lr])
    else:
        log(f"[pretrain] seed {seed} {opt} base at lr {best_lr:g} ({cfg.pretrain.steps} steps)")
        info = pretrain_run(cfg, tok, data, seed, opt, best_lr, cfg.pretrain.steps, base / "run")
    info["sweep"] = {_lr_tag(lr): r["val_loss"] for lr, r in sweep.items()}
    info["chosen_lr"] = best_lr
    return mark(base, info)


# --------------------------------------------------------------------------------------------- stage 2
def sft_run(cfg: StudyConfig, tok, rows, seed: int, base_info: dict, opt: str, lora: bool, out: Path) -> dict:
    if (info := done(out)) is not None:
        return info
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    import hf_muon  # noqa: F401

    s = cfg.sft
    model = AutoModelForCausalLM.from_pretrained(base_info["model_dir"])
    peft_config = None
    optim_args = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=s.lora_r, lora_alpha=2 * s.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
        optim_args = f"lora_policy={s.lora_policy}" if opt == "muon" else None
    args = SFTConfig(
        output_dir=str(out), optim=_optim(opt), optim_args=optim_args, learning_rate=s.lrs[opt], seed=seed,
        data_seed=seed, num_train_epochs=s.epochs, max_steps=s.max_steps or -1,
        per_device_train_batch_size=s.batch_size, warmup_steps=s.warmup_ratio, lr_scheduler_type=s.lr_scheduler,
        weight_decay=s.weight_decay, max_length=s.max_length, assistant_only_loss=True, packing=False,
        logging_steps=1, save_strategy="epoch", save_total_limit=1, report_to=[], bf16=_cuda(),
        use_cpu=not _cuda(), gradient_checkpointing=False, dataset_num_proc=None, max_grad_norm=1.0,
    )
    ds = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    if lora:
        trainer.model = trainer.model.merge_and_unload()
    _save(trainer, tok, out)
    return mark(out, {"kind": "sft", "pretrain_optimizer": base_info["optimizer"], "sft_optimizer": opt, "lora": lora,
                       "lr": s.lrs[opt], "seed": seed, "train_rows": len(rows), "train_seconds": time.time() - t0,
                       "steps": trainer.state.global_step, "log_history": trainer.state.log_history,
                       "model_dir": str(out / "model"), "base_model_dir": base_info["model_dir"]})


# --------------------------------------------------------------------------------------------- stage 3
def score(cfg: StudyConfig, model_dir: str, out: Path, is_base: bool) -> dict:
    f = out / "scores.json"
    if f.exists():
        return json.loads(f.read_text())
    from ..evaluation.cli import score as score_model

    tasks = list(cfg.eval.tasks) + ["sft_loss", "perplexity"]
    options = {k: dict(v) for k, v in cfg.eval.task_options.items() if k in tasks}
    options.setdefault("sft_loss", {}).setdefault("heldout_fraction", cfg.sft.heldout_fraction)
    ppl_corpus = cfg.pretrain.corpus if cfg.pretrain.corpus != "fineweb-edu" else "tinystories"
    options.setdefault("perplexity", {}).setdefault("corpus", ppl_corpus)
    options["perplexity"].setdefault("block_size", cfg.pretrain.block_size)
    lim = cfg.eval.limit
    limit = {t: (lim.get(t) if isinstance(lim, dict) else lim) for t in tasks}
    # native (fast default) or lm-eval itself (sft_loss and perplexity, which lm-eval lacks, always run natively)
    res = score_model(model_dir, tasks, backend=cfg.eval.backend, data_dir=resolve_data_dir(cfg.data_dir), limit=limit,
                      batch_size=cfg.eval.batch_size, task_options=options,
                      allow_code_execution=cfg.eval.allow_code_execution, device="cuda" if _cuda() else None,
                      work_dir=out / "lm_eval" if cfg.eval.backend == "lm-eval" else None, progress=True)
    slim = {t: {k: v for k, v in r.items() if k not in ("samples", "acc_by_subject")} for t, r in res.items()}
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(slim, indent=2, default=str))
    return slim


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------------------------- driver
def run_study(cfg: StudyConfig, stages=STAGES, log: Callable = print) -> Path:
    """Run (or resume) the study; returns the report directory."""
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; valid: {', '.join(STAGES)}")
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    tok = load_tokenizer(cfg)
    if "pretrain" in stages or "sft" in stages:
        data = pretrain_blocks(cfg, tok) if cfg.model.base_model is None else None
        train_rows, held_rows, report = sft_rows(cfg)
        mark(root / "data", {"kind": "data", "sft_rows": report.rows, "sft_valid": len(train_rows) + len(held_rows),
                              "sft_train": len(train_rows), "sft_heldout": len(held_rows),
                              "sft_malformed": report.malformed, "sft_skip_reasons": report.reasons,
                              "sft_source": report.source,
                              "pretrain_train_blocks": len(data[0]) if data else None,
                              "pretrain_val_blocks": len(data[1]) if data else None})
        log(f"[data] tulu rows: {report.rows} read, {report.malformed} malformed (skipped), "
            f"{len(train_rows)} train, {len(held_rows)} held out")
        for seed in cfg.seeds:
            bases = {}
            if cfg.model.base_model:  # public_base mode: SFT a pretrained checkpoint with each optimizer
                bases["pretrained"] = mark(root / f"seed{seed}" / "base-pretrained", {
                    "kind": "pretrained", "optimizer": "pretrained", "model_dir": cfg.model.base_model})
            for opt in [] if cfg.model.base_model else cfg.optimizers:
                if "pretrain" in stages or done(root / f"seed{seed}" / f"base-{opt}"):
                    bases[opt] = pretrain(cfg, tok, data, seed, opt, root, log)
            if "sft" not in stages:
                continue
            for unit in model_units(cfg, root):
                if unit["seed"] != seed or unit["kind"] != "sft" or unit["pretrain"] not in bases:
                    continue
                log(f"[sft] seed {seed} {unit['pair']}")
                sft_run(cfg, tok, train_rows, seed, bases[unit["pretrain"]], unit["sft"], unit["lora"], unit["dir"])
    if "score" in stages:
        for unit in model_units(cfg, root):
            info = done(unit["dir"])
            if info is None:
                continue
            log(f"[score] seed {unit['seed']} {unit['pair']}")
            score(cfg, info["model_dir"], unit["dir"], unit["kind"] == "base")
    out = root / "report"
    if "report" in stages:
        write_report(cfg, root, out, log)
    return out
