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


@dataclass
class PretrainSpec:
    corpus: str = "tinystories"
    max_tokens: int | None = None  # token budget cap of the corpus used (None: all of it)
    block_size: int = 128
    steps: int = 200
    batch_size: int = 8
    warmup_ratio: float = 0.1
    weight_decay: float = 0.1
    sweep_steps: int | None = None  # lr sweep run length (None: = steps, the sweep run is kept as the base)
    lrs: dict[str, list[float]] = field(default_factory=lambda: {"adamw": [1e-3, 3e-3], "muon": [3e-3, 1e-2]})
    val_fraction: float = 0.1


@dataclass
class SFTSpec:
    dataset: str = "allenai/tulu-3-sft-mixture"  # Hub name; the local mirror file has the same schema
    mirror_file: str | None = "sft/tulu3_sft_mixture_sample.jsonl"  # under data_dir; null: read ``dataset`` from the Hub
    max_rows: int | None = None  # cap on rows read from the Hub
    heldout_fraction: float = 0.1
    max_length: int = 256
    epochs: float = 2.0  # Moonlight Table 6: two epochs
    max_steps: int | None = None
    batch_size: int = 4
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"  # Moonlight Table 6: linear decay to 0
    weight_decay: float = 0.0
    lrs: dict[str, float] = field(default_factory=lambda: {"adamw": 5e-4, "muon": 5e-4})
    lora: bool = False  # also run LoRA variants (LoRA factors on AdamW; lora_policy for Muon)
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
        if self.pretrain.corpus not in CORPORA:
            raise ValueError(f"pretrain.corpus: {self.pretrain.corpus!r}; valid: {', '.join(CORPORA)}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.model.base_model is None:
            for o in self.optimizers:
                lrs = self.pretrain.lrs.get(o)
                if not lrs or not all(isinstance(x, (int, float)) and x > 0 for x in lrs):
                    raise ValueError(f"pretrain.lrs.{o}: give a non-empty list of positive learning rates")
        for o in self.optimizers:
            lr = self.sft.lrs.get(o)
            if not isinstance(lr, (int, float)) or lr <= 0:
                raise ValueError(f"sft.lrs.{o}: give a positive learning rate")
        if not 0 < self.sft.heldout_fraction < 1:
            raise ValueError("sft.heldout_fraction must be in (0, 1)")
        if self.eval.backend not in ("native", "lm-eval"):
            raise ValueError(f"eval.backend: {self.eval.backend!r}; valid: native, lm-eval")
        if self.sft.lora_policy not in ("adamw", "b_only", "both"):
            raise ValueError(f"sft.lora_policy: {self.sft.lora_policy!r}; valid: adamw, b_only, both")
        return self


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
