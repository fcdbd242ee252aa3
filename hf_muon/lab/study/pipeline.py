"""The pretraining-vs-SFT optimizer-mismatch study (Moonlight, arXiv 2502.16982, Table 6), as four stages.

1. **pretrain** — per seed and optimizer (AdamW, Muon): an lr sweep declared in the config (best validation loss
   wins; a best lr at a grid edge extends the grid, :mod:`~hf_muon.lab.study.sweep`), then the base model at the
   chosen lr (the sweep run itself when ``sweep_steps`` is unset), saved with its optimizer state. Same
   architecture, data, token budget and seed for both optimizers.
2. **sft** — every base × every SFT optimizer (and the remedy arms on the AdamW base) on the tulu rows, each cell
   at the best lr of its own grid on the SFT validation slice (:mod:`~hf_muon.lab.study.train`).
3. **score** — every base and SFT model: the configured benchmark tasks (``hf-muon score``'s entry), plus the SFT
   test-slice loss and per-token accuracy and the pretraining validation loss (:mod:`~hf_muon.lab.study.heldout`).
4. **report** — Table-6-style table (mean ± std over seeds), paired differences with 95 % intervals, the remedy
   table, PNG plots, markdown, model cards (:mod:`~hf_muon.lab.study.report`).

Each unit of work writes ``DONE.json`` when it finishes and is skipped on a re-run; a unit killed midway
resumes from its last Trainer checkpoint. Layout under ``output_dir``::

    seed{S}/sweep-{opt}-lr{lr}/  seed{S}/base-{opt}/  seed{S}/sft-{base}-{opt}[-{variant}]/lr{lr}/  report/
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..data import resolve_data_dir
from .config import StudyConfig, to_dict
from .report import write_report
from .train import new_model as _new_model  # noqa: F401  (kept for callers of the old name)
from .train import pretrain, sft_cell
from .units import done, mark, model_units

STAGES = ("pretrain", "sft", "score", "report")


def load_tokenizer(cfg: StudyConfig):
    """GPT-2 BPE (mirror or Hub; cut to ``model.vocab_size``) with the Tulu chat template; the base checkpoint's
    own in base_model mode."""
    from ..chat import prepare_chat_tokenizer

    if cfg.model.base_model:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(cfg.model.base_model)
    else:
        from ..data import load_tokenizer as gpt2

        tok = gpt2(resolve_data_dir(cfg.data_dir), vocab_size=cfg.model.vocab_size)
    return prepare_chat_tokenizer(tok)


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


def pretrain_blocks(cfg: StudyConfig, tok):
    """(train, val) causal-LM blocks of the pretraining corpus or corpora (``tinystories+c4``): each corpus is
    split into its own train and validation tail, then the parts are concatenated, so the validation set has
    every corpus in it. Each comes from the mirror file, or the Hub with the same schema. ``max_tokens`` is split
    evenly over the corpora."""
    from datasets import concatenate_datasets

    from ..data import corpus_path, lm_blocks, load_documents, train_val_split

    spec, root = cfg.pretrain, resolve_data_dir(cfg.data_dir)
    names = spec.corpora()
    budget = spec.max_tokens // len(names) if spec.max_tokens else None
    trains, vals = [], []
    for corpus in names:
        docs = None
        if root is not None:
            try:
                corpus_path(root, corpus)
                docs = load_documents(root, corpus)
            except (FileNotFoundError, ValueError):
                docs = None
        if docs is None:
            docs = _hub_documents(corpus, budget)
        train, val = train_val_split(
            lm_blocks(tok, docs, block_size=spec.block_size, max_tokens=budget),
            val_fraction=spec.val_fraction,
        )
        trains.append(train)
        vals.append(val)
    return concatenate_datasets(trains), concatenate_datasets(vals)


def sft_data(cfg: StudyConfig, tok) -> tuple[dict, dict]:
    """``({"train", "val", "test"}: encoded examples, report)``; see :mod:`~hf_muon.lab.study.sftdata`."""
    from .sftdata import encode_rows, load_sft_rows, split_rows

    rows, report = load_sft_rows(cfg)
    encoded = encode_rows(tok, rows, cfg.sft.max_length)  # rows with no assistant token left after truncation drop
    kept = [{**r, **e} for r, e in zip(rows, encoded) if e is not None]
    train, val, test = split_rows(kept, cfg.sft.val_rows, cfg.sft.test_rows)
    data = {
        k: [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in v]
        for k, v in (("train", train), ("val", val), ("test", test))
    }
    report.update(no_target=len(rows) - len(kept), train=len(train), val=len(val), test=len(test))
    return data, report


# --------------------------------------------------------------------------------------------- stage 3
_EVAL_DATA: dict = {}


def _eval_data(cfg: StudyConfig, model_dir: str):
    """(SFT test examples, pretraining validation blocks) under the model's own tokenizer (cached per run)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    key = (json.dumps(to_dict(cfg), sort_keys=True, default=str), len(tok), type(tok).__name__)
    if key not in _EVAL_DATA:
        from ..chat import prepare_chat_tokenizer

        prepare_chat_tokenizer(tok)
        blocks = pretrain_blocks(cfg, tok)[1] if cfg.model.base_model is None else None
        _EVAL_DATA.clear()
        _EVAL_DATA[key] = (sft_data(cfg, tok)[0]["test"], blocks)
    return _EVAL_DATA[key]


def score(cfg: StudyConfig, model_dir: str, out: Path, is_base: bool) -> dict:
    """``scores.json``: the benchmark tasks, ``sft_loss`` (loss, acc on the test slice) and ``perplexity`` (loss and
    perplexity on the pretraining validation blocks; in base_model mode the corpus's validation text).

    A unit already scored is not scored again; one scored before a task was added to ``eval.tasks`` (e.g. BLiMP)
    gets only the missing tasks, merged into its ``scores.json``."""
    f = out / "scores.json"
    have = json.loads(f.read_text()) if f.exists() else {}
    wanted = [*cfg.eval.tasks, *(["perplexity"] if cfg.model.base_model else [])]
    if have and all(t in have for t in wanted):
        return have
    from transformers import AutoModelForCausalLM

    from ..evaluation.cli import score as score_model
    from .heldout import block_examples, token_metrics

    lim = cfg.eval.limit
    limit = {t: (lim.get(t) if isinstance(lim, dict) else lim) for t in [*cfg.eval.tasks, "sft_loss", "perplexity"]}
    tasks = [t for t in wanted if t not in have]
    options = {k: dict(v) for k, v in cfg.eval.task_options.items() if k in tasks}
    options.setdefault("perplexity", {}).setdefault("corpus", cfg.pretrain.corpora()[0])
    options["perplexity"].setdefault("block_size", cfg.pretrain.block_size)
    res = {}
    if tasks:  # native (fast default) or lm-eval itself
        res = score_model(
            model_dir,
            tasks,
            backend=cfg.eval.backend,
            data_dir=resolve_data_dir(cfg.data_dir),
            limit=limit,
            batch_size=cfg.eval.batch_size,
            task_options=options,
            allow_code_execution=cfg.eval.allow_code_execution,
            device="cuda" if _cuda() else None,
            work_dir=out / "lm_eval" if cfg.eval.backend == "lm-eval" else None,
            progress=False,
        )
    if "sft_loss" not in have:
        test, blocks = _eval_data(cfg, model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        if _cuda():
            model = model.cuda()
        n = limit.get("sft_loss")
        res["sft_loss"] = {
            **token_metrics(model, test[:n] if n else test, cfg.eval.batch_size),
            "backend": "native",
            "split": "test",
        }
        if blocks is not None:
            res["perplexity"] = {
                **token_metrics(model, block_examples(blocks, limit.get("perplexity")), cfg.eval.batch_size),
                "backend": "native",
                "split": "val",
            }
    slim = {
        **have,
        **{t: {k: v for k, v in r.items() if k not in ("samples", "acc_by_subject")} for t, r in res.items()},
    }
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(slim, indent=2, default=str))
    return slim


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------------------------- driver
def run_study(cfg: StudyConfig, stages=STAGES, log: Callable = print, command: str | None = None) -> Path:
    """Run (or resume) the study; returns the report directory. The report covers every seed found finished
    under ``output_dir`` (seeds can be run one at a time)."""
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; valid: {', '.join(STAGES)}")
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    tok = load_tokenizer(cfg)
    if "pretrain" in stages or "sft" in stages:
        blocks = pretrain_blocks(cfg, tok) if cfg.model.base_model is None else None
        data, report = sft_data(cfg, tok)
        mark(
            root / "data",
            {
                "kind": "data",
                "sft": report,
                "tokenizer_vocab": len(tok),
                "pretrain_corpus": cfg.pretrain.corpora(),
                "pretrain_train_blocks": len(blocks[0]) if blocks else None,
                "pretrain_val_blocks": len(blocks[1]) if blocks else None,
            },
        )
        log(
            f"[data] sft rows: {report['rows']} read, {report['malformed']} malformed and {report['duplicates']} "
            f"duplicates skipped; {report['train']} train, {report['val']} val, {report['test']} test"
        )
        for seed in cfg.seeds:
            bases = {}
            if cfg.model.base_model:  # public_base mode: SFT a pretrained checkpoint with each optimizer
                bases["pretrained"] = mark(
                    root / f"seed{seed}" / "base-pretrained",
                    {"kind": "pretrained", "optimizer": "pretrained", "model_dir": cfg.model.base_model},
                )
            for opt in [] if cfg.model.base_model else cfg.optimizers:
                if "pretrain" in stages or done(root / f"seed{seed}" / f"base-{opt}"):
                    bases[opt] = pretrain(cfg, tok, blocks, seed, opt, root, log)
            if "sft" not in stages:
                continue
            tuned: dict = {}
            for unit in model_units(cfg, root):
                if unit["seed"] != seed or unit["kind"] != "sft" or unit["pretrain"] not in bases:
                    continue
                tuned[(unit["pretrain"], unit["sft"], unit["variant"])] = sft_cell(
                    cfg,
                    tok,
                    data,
                    seed,
                    bases[unit["pretrain"]],
                    unit["sft"],
                    unit["variant"],
                    unit["dir"],
                    tuned,
                    log,
                )
    if "score" in stages:
        for unit in model_units(cfg, root):
            info = done(unit["dir"])
            if info is None:
                continue
            log(f"[score] seed {unit['seed']} {unit['pair']}")
            score(cfg, info["model_dir"], unit["dir"], unit["kind"] == "base")
    out = root / "report"
    if "report" in stages:
        write_report(cfg, root, out, log, command=command)
    return out
