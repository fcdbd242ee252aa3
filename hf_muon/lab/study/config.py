"""The mismatch-study configuration: one YAML file, validated into dataclasses.

Unknown keys and bad values are errors that name the key (``pretrain.lrs.muon``) and list what is valid.
See ``recipes/mismatch/*.yaml`` for complete examples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adamw", "muon")
CORPORA = ("tinystories", "c4", "wikitext2", "tinyshakespeare", "fineweb-edu")
# remedy arms on the AdamW base (arXiv 2605.10468 and 2605.06654): LoRA with Muon vs LoRA with AdamW, Muon with
# spectral power p = 1/2, Muon momentum warm-started from the base's AdamW first moment, Muon at 1/2 and 1/4 of its
# tuned SFT lr
REMEDIES = ("lora", "p_half", "warm_start", "lr_half", "lr_quarter")
SFT_FILES = ["sft/tulu3_sft_mixture_sample.jsonl", "sft/tulu3_preference_chosen_as_sft.jsonl"]


@dataclass
class ModelSpec:
    """A Llama built from a config (``from_pretrained`` only in ``base_model`` mode)."""

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 344
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True
    base_model: str | None = None  # public_base mode: a pretrained checkpoint (Hub name or local dir)
    vocab_size: int | None = None  # None: GPT-2's 50,257; N: GPT-2 BPE cut to its first N tokens (data.truncate_bpe)


@dataclass
class PretrainSpec:
    corpus: str = "tinystories"  # one name, or several joined by "+" (e.g. tinystories+c4): each split apart
    max_tokens: int | None = None  # token budget cap of the corpus used (None: all of it)
    block_size: int = 128
    steps: int = 200
    batch_size: int = 8
    warmup_ratio: float = 0.1
    weight_decay: float = 0.1
    sweep_steps: int | None = None  # lr sweep run length (None: = steps, the sweep run is kept as the base)
    lrs: dict[str, list[float]] = field(default_factory=lambda: {"adamw": [1e-3, 3e-3], "muon": [3e-3, 1e-2]})
    val_fraction: float = 0.1
    max_extensions: int = 2  # best lr at a grid edge: add a point beyond it, at most this many times

    def corpora(self) -> list[str]:
        return [c.strip() for c in self.corpus.split("+") if c.strip()]


@dataclass
class SFTSpec:
    dataset: str = "allenai/tulu-3-sft-mixture"  # Hub name; the local mirror file has the same schema
    # files under data_dir (one path or a list; both local tulu files by default), deduplicated by content;
    # null: read ``dataset`` from the Hub
    mirror_file: str | list[str] | None = field(default_factory=lambda: list(SFT_FILES))
    max_rows: int | None = None  # cap on rows read from the Hub
    val_rows: int = 40  # fixed validation slice (lr selection), chosen by content hash, never by seed
    test_rows: int = 40  # fixed test slice (the reported held-out numbers), chosen the same way
    max_length: int = 256
    epochs: float = 2.0  # Moonlight Table 6: two epochs
    max_steps: int | None = None
    batch_size: int = 4
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"  # Moonlight Table 6: linear decay to 0
    weight_decay: float = 0.0
    # an lr grid per SFT optimizer (a scalar is a one-point grid); every cell picks its lr on the validation slice
    lrs: dict[str, list[float]] = field(
        default_factory=lambda: {"adamw": [2.5e-4, 5e-4, 1e-3], "muon": [2.5e-4, 5e-4, 1e-3]}
    )
    lora_lrs: dict[str, list[float]] | None = None  # grids of the LoRA cells (None: ``lrs``)
    sweep_steps: int | None = None  # grid run length (None: full runs, the best one is kept as the model)
    max_extensions: int = 2  # as pretrain.max_extensions
    remedies: list[str] = field(default_factory=list)  # remedy arms on the AdamW base, out of REMEDIES
    lora: bool = False  # also run LoRA variants on every base (LoRA factors on AdamW; lora_policy for Muon)
    lora_r: int = 8
    lora_policy: str = "both"  # hf_muon's default (recipes/lora_policy)


@dataclass
class EvalSpec:
    tasks: list[str] = field(default_factory=lambda: ["mmlu", "arc_easy", "gsm8k"])
    limit: int | dict | None = 20
    batch_size: int = 8
    allow_code_execution: bool = False  # HumanEval runs generated code: opt in explicitly
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    backend: str = "native"  # native (fast) or lm-eval (lm-evaluation-harness itself; pip install hf_muon[lmeval])


@dataclass
class StudyConfig:
    name: str = "mismatch"
    output_dir: str = "runs/mismatch"
    data_dir: str | None = None  # local mirror; None: $HF_MUON_DATA, else the Hub
    seeds: list[int] = field(default_factory=lambda: [0])
    optimizers: list[str] = field(default_factory=lambda: list(OPTIMIZERS))
    model: ModelSpec = field(default_factory=ModelSpec)
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)
    sft: SFTSpec = field(default_factory=SFTSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    model_cards_dir: str | None = None  # also copy generated cards here (the committed smoke run)
    license: str = "apache-2.0"

    def validate(self) -> StudyConfig:
        for o in self.optimizers:
            if o not in OPTIMIZERS:
                raise ValueError(f"optimizers: {o!r} is not valid; valid: {', '.join(OPTIMIZERS)}")
        for c in self.pretrain.corpora() or [""]:
            if c not in CORPORA:
                raise ValueError(f"pretrain.corpus: {c!r}; valid: {', '.join(CORPORA)} (or several joined by '+')")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.model.base_model is None:
            for o in self.optimizers:
                self.pretrain.lrs[o] = _grid(self.pretrain.lrs.get(o), f"pretrain.lrs.{o}")
        for o in self.optimizers:
            self.sft.lrs[o] = _grid(self.sft.lrs.get(o), f"sft.lrs.{o}")
            if self.sft.lora_lrs is not None:
                self.sft.lora_lrs[o] = _grid(self.sft.lora_lrs.get(o), f"sft.lora_lrs.{o}")
        for r in self.sft.remedies:
            if r not in REMEDIES:
                raise ValueError(f"sft.remedies: {r!r} is not valid; valid: {', '.join(REMEDIES)}")
        if self.sft.remedies and (self.model.base_model or set(self.optimizers) != set(OPTIMIZERS)):
            raise ValueError("sft.remedies need both optimizers and a pretraining stage (no model.base_model)")
        for key in ("val_rows", "test_rows"):
            if not isinstance(getattr(self.sft, key), int) or getattr(self.sft, key) < 1:
                raise ValueError(f"sft.{key}: give a positive number of rows")
        for where, spec in (("pretrain", self.pretrain), ("sft", self.sft)):
            if not isinstance(spec.max_extensions, int) or spec.max_extensions < 0:
                raise ValueError(f"{where}.max_extensions: give an integer >= 0")
        if isinstance(self.sft.mirror_file, str):
            self.sft.mirror_file = [self.sft.mirror_file]
        v = self.model.vocab_size
        if v is not None and (not isinstance(v, int) or not 512 <= v <= 50257):
            raise ValueError(f"model.vocab_size: {v!r}; give null (GPT-2's 50,257) or an integer in [512, 50257]")
        if self.eval.backend not in ("native", "lm-eval"):
            raise ValueError(f"eval.backend: {self.eval.backend!r}; valid: native, lm-eval")
        if self.sft.lora_policy not in ("adamw", "b_only", "both"):
            raise ValueError(f"sft.lora_policy: {self.sft.lora_policy!r}; valid: adamw, b_only, both")
        return self


def _grid(value, where: str) -> list[float]:
    """A scalar or a list of positive learning rates, as a sorted list without repeats."""
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in values)
    ):
        raise ValueError(f"{where}: give a positive learning rate or a non-empty list of them, got {value!r}")
    return sorted({float(x) for x in values})


def _build(cls, data: dict, where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ValueError(f"unknown config key {path!r}; valid keys: {', '.join(names)}")
        sub = {"model": ModelSpec, "pretrain": PretrainSpec, "sft": SFTSpec, "eval": EvalSpec}.get(key)
        kwargs[key] = _build(sub, value, path) if sub is not None and cls is StudyConfig else value
    return cls(**kwargs)


def load_config(path: str | Path, overrides: dict | None = None) -> StudyConfig:
    """Read and validate a study YAML (``overrides`` replaces top-level keys, e.g. ``output_dir``)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    data.update(overrides or {})
    return _build(StudyConfig, data, "").validate()


def to_dict(cfg: StudyConfig) -> dict:
    return dataclasses.asdict(cfg)
