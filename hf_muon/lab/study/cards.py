"""Model cards for the study's models, built with ``huggingface_hub.ModelCard`` from ``model_cards/template.md``.

YAML metadata: license, datasets, base_model, tags, pipeline tag and a ``model-index`` with the eval
results. :func:`validate_card` re-parses a written card with huggingface_hub (metadata block, model-index
→ ``EvalResult`` list) and raises if anything does not round-trip.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[3] / "model_cards" / "template.md"
CORPUS_DATASETS = {
    "tinystories": "roneneldan/TinyStories",
    "c4": "allenai/c4",
    "wikitext2": "Salesforce/wikitext",
    "tinyshakespeare": "karpathy/tiny_shakespeare",
    "fineweb-edu": "HuggingFaceFW/fineweb-edu",
}
METRICS = [  # (task, key, dataset id, dataset name, metric type, metric name, scale); "{shots}" comes from the
    # task's recorded config (its num_fewshot), so a card never claims a shot count the run did not use
    ("mmlu", "acc", "cais/mmlu", "MMLU", "accuracy", "acc ({shots}-shot)", 100.0),
    ("arc_easy", "acc", "allenai/ai2_arc", "ARC-Easy", "accuracy", "acc ({shots}-shot)", 100.0),
    ("arc_easy", "acc_norm", "allenai/ai2_arc", "ARC-Easy", "accuracy", "acc_norm ({shots}-shot)", 100.0),
    (
        "gsm8k",
        "strict-match",
        "openai/gsm8k",
        "GSM8K",
        "exact_match",
        "exact_match, strict-match ({shots}-shot)",
        100.0,
    ),
    (
        "gsm8k",
        "flexible-extract",
        "openai/gsm8k",
        "GSM8K",
        "exact_match",
        "exact_match, flexible-extract ({shots}-shot)",
        100.0,
    ),
    ("humaneval", "pass@1", "openai/openai_humaneval", "HumanEval", "pass@1", "pass@1", 100.0),
    ("blimp", "acc", "nyu-mll/blimp", "BLiMP", "accuracy", "acc ({shots}-shot)", 100.0),
    *[
        (
            "blimp",
            f"acc_by_field.{f}",
            "nyu-mll/blimp",
            "BLiMP",
            "accuracy",
            f"acc, {f.replace('_', '-')} ({{shots}}-shot)",
            100.0,
        )
        for f in ("morphology", "syntax", "semantics", "syntax_semantics")
    ],
    (
        "sft_loss",
        "loss",
        "allenai/tulu-3-sft-mixture",
        "tulu-3 held-out",
        "loss",
        "assistant-token loss",
        1.0,
    ),
    (
        "sft_loss",
        "acc",
        "allenai/tulu-3-sft-mixture",
        "tulu-3 held-out",
        "accuracy",
        "assistant-token accuracy",
        100.0,
    ),
    ("perplexity", "perplexity", None, "pretraining validation", "perplexity", "perplexity", 1.0),
]


def _template_path() -> Path:
    if TEMPLATE.exists():
        return TEMPLATE
    raise FileNotFoundError(f"model card template not found at {TEMPLATE}")


def eval_results(scores: dict, corpus: str):
    from huggingface_hub import EvalResult

    out = []
    from .tables import lookup

    for task, key, ds_id, ds_name, mtype, mname, scale in METRICS:
        value = lookup(scores.get(task, {}), key)
        if value is None:
            continue
        if "{shots}" in mname:
            shots = (scores[task].get("config") or {}).get("num_fewshot")
            mname = mname.format(shots=shots) if shots is not None else mname.replace(" ({shots}-shot)", "")
        out.append(
            EvalResult(
                task_type="text-generation",
                dataset_type=ds_id or CORPUS_DATASETS.get(corpus, corpus),
                dataset_name=ds_name,
                metric_type=mtype,
                metric_name=mname,
                metric_value=round(float(value) * scale, 4),
            )
        )
    return out


def build_card(
    *,
    name: str,
    unit: dict,
    info: dict,
    scores: dict,
    cfg,
    n_params: int,
    hardware: str,
    hf_muon_version: str,
    config_name: str,
):
    from huggingface_hub import ModelCard, ModelCardData

    corpus = cfg.pretrain.corpora()[0]
    sft = unit["kind"] == "sft"
    datasets = ([CORPUS_DATASETS.get(c, c) for c in cfg.pretrain.corpora()] if not cfg.model.base_model else []) + (
        ["allenai/tulu-3-sft-mixture"] if sft else []
    )
    base_model = cfg.model.base_model or (f"hf_muon-mismatch-base-{unit['pretrain']}" if sft else None)
    data = ModelCardData(
        license=cfg.license,
        datasets=datasets,
        base_model=base_model,
        pipeline_tag="text-generation",
        library_name="transformers",
        model_name=name,
        tags=["hf_muon", "muon", "optimizer-mismatch", f"pretrain-{unit['pretrain']}"]
        + ([f"sft-{unit['sft']}"] if sft else []),
        eval_results=eval_results(scores, corpus) or None,
    )
    hp = {
        "Pretraining": f"{cfg.pretrain.steps} steps × {cfg.pretrain.batch_size} × {cfg.pretrain.block_size} tokens "
        f"of {corpus}, lr {info.get('chosen_lr', info.get('lr'))} (sweep "
        f"{cfg.pretrain.lrs.get(unit['pretrain'])}), cosine, warmup {cfg.pretrain.warmup_ratio}, "
        f"weight decay {cfg.pretrain.weight_decay}",
        "Seed": unit["seed"],
    }
    if sft:
        variant = unit.get("variant") or ""
        hp["SFT"] = (
            f"tulu-3 rows ({info.get('train_rows')} train rows; validation and test slices excluded), "
            f"{info.get('steps')} steps, lr {info.get('lr')} (chosen on the validation slice from "
            f"{info.get('sweep')}), {cfg.sft.lr_scheduler} schedule, max length {cfg.sft.max_length}, "
            f"assistant-only loss" + (f", variant {variant}" if variant else "")
        )
    if "muon" in (unit["pretrain"], unit["sft"]):
        hp["Muon settings"] = "hf_muon defaults: Nesterov 0.95, Polar Express 5 steps, moonlight scale 0.2·√max(A,B)"
    rows = ["| benchmark | metric | value |", "|---|---|---|"]
    for r in eval_results(scores, corpus):
        rows.append(f"| {r.dataset_name} | {r.metric_name} | {r.metric_value:g} |")
    m = cfg.model
    card = ModelCard.from_template(
        data,
        template_path=str(_template_path()),
        model_name=name,
        summary=f"A {n_params / 1e6:.1f}M-parameter Llama, pretrained with **{unit['pretrain']}**"
        + (
            f" and fine-tuned with **{unit['sft']}**" + (f" ({unit['variant']})" if unit.get("variant") else "")
            if sft
            else ""
        ),
        pairing=f"{unit['pretrain']} / {unit['sft'] or '— (base)'}",
        architecture=f"Llama, hidden {m.hidden_size}, {m.num_hidden_layers} layers, {m.num_attention_heads} heads, "
        f"intermediate {m.intermediate_size}, GPT-2 BPE vocabulary",
        n_params=f"{n_params:,}",
        hyperparameters=hp,
        hardware=hardware,
        wall_time=f"{info.get('train_seconds', 0):.0f} s",
        config_name=config_name,
        hf_muon_version=hf_muon_version,
        eval_table="\n".join(rows),
        chance_note="Chance level: MMLU 25%, ARC-Easy ≈ 25%, GSM8K and HumanEval ≈ 0%"
        + (", BLiMP 50% (overall and each field)." if "blimp" in scores else "."),
        intended_use="Studying how the pretraining optimizer and the fine-tuning optimizer interact.",
    )
    return card


def validate_card(path: str | Path) -> None:
    """Re-parse a card with huggingface_hub; raises ``ValueError`` when metadata does not round-trip."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard.load(str(path))
    meta = card.data.to_dict()
    for key in ("license", "tags", "pipeline_tag"):
        if not meta.get(key):
            raise ValueError(f"{path}: model card metadata lacks {key!r}")
    if "model-index" in meta:
        name, results = model_index_to_eval_results(meta["model-index"])
        if not results:
            raise ValueError(f"{path}: model-index has no eval results")
