"""Stage 4: the Table-6-style report (mean ± std over seeds), PNG plots, markdown, model cards."""

from __future__ import annotations

import json
import math
import platform
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from .units import DONE, model_units

# (label, task, key, scale, higher is better, chance level in the same units)
COLUMNS = [
    ("MMLU acc", "mmlu", "acc", 100, True, 25.0),
    ("ARC-Easy acc", "arc_easy", "acc", 100, True, 25.0),
    ("ARC-Easy acc_norm", "arc_easy", "acc_norm", 100, True, 25.0),
    ("GSM8K strict-match", "gsm8k", "strict-match", 100, True, 0.0),
    ("GSM8K flexible-extract", "gsm8k", "flexible-extract", 100, True, 0.0),
    ("HumanEval pass@1", "humaneval", "pass@1", 100, True, 0.0),
    ("SFT held-out loss", "sft_loss", "loss", 1, False, None),
    ("pretrain val ppl", "perplexity", "perplexity", 1, False, None),
]
MOONLIGHT_TABLE6 = {  # MMLU / HumanEval / MBPP / GSM8K, pretrain / SFT
    "muon / muon": (55.7, 57.3, 55.6, 68.0), "adamw / muon": (55.3, 53.7, 55.5, 62.1),
    "muon / adamw": (50.2, 52.4, 55.2, 64.9), "adamw / adamw": (52.0, 53.1, 55.2, 64.6),
}


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def collect(cfg, root: Path) -> dict:
    """{pair: {column label: [value per seed]}} plus the raw per-unit records."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = {}  # questions scored per column (for the chance-level test)
    units = []
    for unit in model_units(cfg, root):
        f = unit["dir"] / "scores.json"
        if not f.exists():
            continue
        scores = json.loads(f.read_text())
        info = json.loads((unit["dir"] / DONE).read_text())
        units.append({**unit, "dir": str(unit["dir"]), "scores": scores, "info": info})
        for label, task, key, scale, _, _ in COLUMNS:
            v = scores.get(task, {}).get(key)
            if v is not None:
                table[unit["pair"]][label].append(float(v) * scale)
                counts[label] = int(scores[task].get("n_scored") or 0)
    return {"table": table, "units": units, "counts": counts}


def ordering_notes(table: dict, cfg, counts: dict | None = None) -> list[str]:
    """Plain statements: does Muon/Muon come out on top, by how much vs the seed spread, and at chance?

    "At chance" means the best pairing is within two binomial standard errors of the chance rate for
    the number of questions scored (e.g. ±11.5 points around 25% for 57 questions).
    """
    counts = counts or {}
    notes = []
    sft_pairs = [p for p in table if not p.endswith("/ -") and "LoRA" not in p]
    for label, _, _, _, higher, chance in COLUMNS:
        vals = {p: table[p][label] for p in sft_pairs if table[p].get(label)}
        if len(vals) < 2:
            continue
        means = {p: statistics.fmean(v) for p, v in vals.items()}
        order = sorted(means, key=means.get, reverse=higher)
        spread = max((statistics.stdev(v) for v in vals.values() if len(v) > 1), default=None)
        gap = abs(means[order[0]] - means[order[1]])
        text = (f"**{label}** ({'higher' if higher else 'lower'} is better), best to worst: "
                + ", ".join(f"{p} ({means[p]:.2f})" for p in order) + ". ")
        text += ("Muon/Muon is best" if order[0] == "muon / muon" else f"best is {order[0]}, not Muon/Muon")
        if spread is not None:
            text += f"; top-two gap {gap:.2f} vs largest seed std {spread:.2f}" + (
                " (within noise)" if gap <= spread else " (beyond one std)")
        else:
            text += f"; top-two gap {gap:.2f}, one seed only (no noise estimate)"
        n = counts.get(label, 0)
        se = 100 * math.sqrt(chance / 100 * (1 - chance / 100) / n) if chance and n else 0.0
        if chance is not None and max(means.values()) <= chance + 2 * se + (spread or 0) + 1e-9:
            text += (f"; every pairing is within chance level ({chance:g}" + (f" ± {2 * se:.1f}, n={n}" if se else "")
                     + "), so this ordering carries no signal")
        notes.append(text + ".")
    return notes


def _plots(collected: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    units = collected["units"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for u in units:
        hist = [(h["step"], h["loss"]) for h in u["info"].get("log_history", []) if "loss" in h]
        if not hist or u["seed"] != units[0]["seed"]:
            continue
        ax = axes[0] if u["kind"] == "base" else axes[1]
        ax.plot(*zip(*hist), label=u["pair"])
    axes[0].set(title="pretraining loss (first seed)", xlabel="step", ylabel="train loss")
    axes[1].set(title="SFT loss (assistant tokens, first seed)", xlabel="step", ylabel="train loss")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    files.append("loss_curves.png")
    table = collected["table"]
    labels = [c for c in COLUMNS if any(table[p].get(c[0]) for p in table)]
    if labels:
        fig, axes = plt.subplots(1, len(labels), figsize=(3.3 * len(labels), 3.6))
        axes = axes if len(labels) > 1 else [axes]
        pairs = [p for p in table if not p.endswith("/ -")]
        for ax, (label, _, _, _, _, chance) in zip(axes, labels):
            means = [statistics.fmean(table[p][label]) if table[p].get(label) else 0 for p in pairs]
            errs = [statistics.stdev(table[p][label]) if len(table[p].get(label, [])) > 1 else 0 for p in pairs]
            ax.bar(range(len(pairs)), means, yerr=errs, color=["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"][:len(pairs)])
            ax.set_xticks(range(len(pairs)), pairs, rotation=45, ha="right", fontsize=7)
            if chance:
                ax.axhline(chance, color="grey", ls="--", lw=1)
            ax.set_title(label, fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scores.png", dpi=110)
        plt.close(fig)
        files.append("scores.png")
    return files


def _count_params(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in model_dir.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                n = 1
                for d in st.get_slice(k).get_shape():
                    n *= d
                total += n
    return total


def write_report(cfg, root: Path, out: Path, log=print) -> Path:
    import torch

    import hf_muon

    from .cards import build_card, validate_card

    out.mkdir(parents=True, exist_ok=True)
    collected = collect(cfg, root)
    table = collected["table"]
    cols = [c for c in COLUMNS if any(table[p].get(c[0]) for p in table)]
    lines = ["| pretrain / SFT | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for pair in sorted(table, key=lambda p: (p.endswith("/ -"), p)):
        lines.append(f"| {pair} | " + " | ".join(_fmt(table[pair].get(c[0], [])) for c in cols) + " |")
    data = json.loads((root / "data" / DONE).read_text()) if (root / "data" / DONE).exists() else {}
    plots = _plots(collected, out)
    hardware = (f"{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else
                f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    cards = []
    for u in collected["units"]:
        name = f"{cfg.name}-seed{u['seed']}-" + (u["pair"].replace(" / -", "-base").replace(" / ", "-")
                                                 .replace(" (LoRA)", "-lora"))
        model_dir = Path(u["info"]["model_dir"])
        n_params = _count_params(model_dir)
        card = build_card(name=name, unit=u, info=u["info"], scores=u["scores"], cfg=cfg, n_params=n_params,
                          hardware=hardware, hf_muon_version=hf_muon.__version__, config_name=cfg.name)
        path = model_dir / "README.md"
        card.save(str(path))
        validate_card(path)
        cards.append((name, path))
        if cfg.model_cards_dir:
            dst = Path(cfg.model_cards_dir) / f"{name}.md"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dst)
    notes = ordering_notes(table, cfg, collected["counts"])
    moon = ["| pretrain / SFT | MMLU | HumanEval | MBPP | GSM8K |", "|---|---|---|---|---|"] + [
        f"| {k} | " + " | ".join(f"{v:g}" for v in vals) + " |" for k, vals in MOONLIGHT_TABLE6.items()]
    md = [f"# Optimizer-mismatch study: {cfg.name}", "",
          f"Seeds: {cfg.seeds}. Model: Llama hidden {cfg.model.hidden_size}, {cfg.model.num_hidden_layers} layers. "
          f"Pretraining: {cfg.pretrain.steps} steps × {cfg.pretrain.batch_size} × {cfg.pretrain.block_size} tokens of "
          f"{cfg.pretrain.corpus}; lr sweeps {cfg.pretrain.lrs}. SFT: tulu-3-sft-mixture, {cfg.sft.epochs} epochs, "
          f"lrs {cfg.sft.lrs}. Hardware: {hardware}.", "",
          f"Data: {data.get('sft_rows')} tulu rows read from {data.get('sft_source')}, {data.get('sft_malformed')} "
          f"malformed (skipped: {data.get('sft_skip_reasons')}), {data.get('sft_train')} used for SFT, "
          f"{data.get('sft_heldout')} held out for the SFT loss.", "",
          "## Results (mean ± std over seeds)", "", *lines, "",
          "Benchmarks in %, losses in nats; `x / -` rows are the pretrained bases. Chance: MMLU 25, ARC-Easy ≈ 25, "
          "GSM8K 0, HumanEval 0.", "", "## Does Moonlight's ordering reproduce?", "",
          *[f"- {n}" for n in notes], "", "Moonlight Table 6 (16B-A3B MoE, 1.2T tokens) for reference:", "", *moon, "",
          "## Plots", "", *[f"![{p}]({p})" for p in plots], "", "## Model cards", "",
          *[f"- `{n}`: {p}" for n, p in cards]]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps({"table": table, "notes": notes, "data": data}, indent=2, default=str))
    log(f"[report] {out / 'report.md'}")
    return out
