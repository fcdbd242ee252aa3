"""Stage 4: the report — Table-6-style 2×2 (mean ± std over seeds), chosen lrs, paired differences with 95 %
intervals, the remedy table, plain statements, PNG plots, model cards, and the command / machine / commit.

The report covers every seed found finished on disk (``seed*/`` under ``output_dir``), not only the seeds of
this invocation, so seeds run one at a time add up. Numbers come from :mod:`~hf_muon.lab.study.tables`.
"""

from __future__ import annotations

import copy
import json
import platform
import re
import shutil
import subprocess
from pathlib import Path

from . import tables as T
from .plots import write_plots
from .units import DONE, model_units

MOONLIGHT_TABLE6 = {  # MMLU / HumanEval / MBPP / GSM8K, pretrain / SFT
    "muon / muon": (55.7, 57.3, 55.6, 68.0),
    "adamw / muon": (55.3, 53.7, 55.5, 62.1),
    "muon / adamw": (50.2, 52.4, 55.2, 64.9),
    "adamw / adamw": (52.0, 53.1, 55.2, 64.6),
}


def seeds_on_disk(cfg, root: Path) -> list[int]:
    found = {int(m.group(1)) for p in root.glob("seed*") if (m := re.fullmatch(r"seed(\d+)", p.name))}
    return sorted(found | set(cfg.seeds))


def collect(cfg, root: Path) -> dict:
    """The scored units of every seed on disk, their values by seed, and the questions scored per column."""
    cfg = copy.deepcopy(cfg)
    cfg.seeds = seeds_on_disk(cfg, root)
    units = []
    for unit in model_units(cfg, root):
        f = unit["dir"] / "scores.json"
        if f.exists() and (unit["dir"] / DONE).exists():
            units.append(
                {
                    **unit,
                    "dir": str(unit["dir"]),
                    "scores": json.loads(f.read_text()),
                    "info": json.loads((unit["dir"] / DONE).read_text()),
                }
            )
    values, counts = T.collect_values(units)
    return {"units": units, "values": values, "counts": counts, "seeds": sorted({u["seed"] for u in units})}


def machine() -> dict:
    """CPU model and the SIMD flags that matter for speed (bf16 dot products or not), torch, threads."""
    import torch

    info = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
        info["cpu_flags"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"})
        info["cores"] = text.count("processor\t:")
    except (OSError, AttributeError):
        info["cpu"] = platform.processor() or platform.machine()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def commit() -> str:
    repo = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (head or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _table(values: dict, pairs: list[str], labels: list[str]) -> list[str]:
    lines = ["| pretrain / SFT | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for p in pairs:
        lines.append(f"| {p} | " + " | ".join(T.mean_std(values[p].get(lab, {})) for lab in labels) + " |")
    return lines


def _lr_lines(units: list[dict]) -> list[str]:
    lines = ["| seed | cell | grid | extended | chosen lr | at edge |", "|---|---|---|---|---|---|"]
    for u in units:
        i = u["info"]
        if "chosen_lr" not in i:
            continue
        ext = ", ".join(f"{x:g}" for x in i.get("extended", [])) or "—"
        grid = ", ".join(f"{x:g}" for x in i.get("grid", []))
        note = "yes (extensions used up)" if i.get("at_edge") else "no"
        if "derived_from" in i:
            grid, note = f"{i['derived_from']['factor']:g} × tuned {i['derived_from']['lr']:g}", "—"
        lines.append(f"| {u['seed']} | {u['pair']} | {grid} | {ext} | {i['chosen_lr']:g} | {note} |")
    return lines


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


def _cards(cfg, col: dict, hardware: str) -> list[tuple[str, Path]]:
    import hf_muon

    from .cards import build_card, validate_card

    cards = []
    for u in col["units"]:
        tag = Path(u["dir"]).name
        name = f"{cfg.name}-seed{u['seed']}-" + (f"{u['pretrain']}-base" if u["kind"] == "base" else tag[4:])
        model_dir = Path(u["info"]["model_dir"])
        if not model_dir.is_dir():
            continue
        card = build_card(
            name=name,
            unit=u,
            info=u["info"],
            scores=u["scores"],
            cfg=cfg,
            n_params=_count_params(model_dir),
            hardware=hardware,
            hf_muon_version=hf_muon.__version__,
            config_name=cfg.name,
        )
        path = model_dir / "README.md"
        card.save(str(path))
        validate_card(path)
        if cfg.model_cards_dir:  # the committed copy is the one the report links to
            dst = Path(cfg.model_cards_dir) / f"{name}.md"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dst)
            path = dst
        cards.append((name, path))
    return cards


def _layout(cfg, values: dict) -> dict:
    """Which columns, 2×2 rows and remedy rows the report shows (only those with values)."""
    labels = [c[0] for c in T.COLUMNS if any(values[p].get(c[0]) for p in values)]
    labels += [d for d in T.FORGETTING_OF if any(values[p].get(d) for p in values)]
    main = [p for p in T.MAIN_PAIRS if p in values] + [p for p in values if p.endswith("/ -")]
    main += [p for p in values if p not in main and not p.startswith("adamw / ")] if cfg.model.base_model else []
    remedies = sorted(p for p in values if p.startswith("adamw / ") and "(" in p)
    return {"labels": labels, "main": main, "remedies": remedies}


def _setup_lines(cfg, data: dict, mach: dict, code: str, command: str | None) -> list[str]:
    """Model, budgets and grids; the SFT data accounting; command, machine and commit."""
    sft = data.get("sft", {})
    files = "; ".join(
        f"{Path(f['source']).name}: {f['rows']} rows, {f['malformed']} malformed, {f['duplicates']} duplicates"
        for f in sft.get("files", [])
    )
    grids = (
        f", grid runs {cfg.sft.sweep_steps} steps then the final run"
        if cfg.sft.sweep_steps
        else ", grid runs are full runs (the best is kept)"
    )
    return [
        f"Model: Llama hidden {cfg.model.hidden_size}, {cfg.model.num_hidden_layers} layers, vocabulary "
        f"{data.get('tokenizer_vocab')}. Pretraining: {cfg.pretrain.steps} steps × {cfg.pretrain.batch_size} × "
        f"{cfg.pretrain.block_size} tokens of {cfg.pretrain.corpus} (sweep runs "
        f"{cfg.pretrain.sweep_steps or cfg.pretrain.steps} steps). SFT: {cfg.sft.epochs} epochs, lr grids "
        f"{cfg.sft.lrs}"
        + (f", LoRA grids {cfg.sft.lora_lrs}" if cfg.sft.lora_lrs else "")
        + grids
        + f"; remedies {cfg.sft.remedies or 'none'}.",
        "",
        f"Data: {sft.get('rows')} SFT rows read ({files}); {sft.get('malformed')} malformed and "
        f"{sft.get('duplicates')} duplicate rows skipped, {sft.get('no_target')} with no assistant token within "
        f"max_length {cfg.sft.max_length} dropped; {sft.get('train')} train, {sft.get('val')} validation "
        f"(lr selection), {sft.get('test')} test (reported), split by content hash. Pretraining blocks: "
        f"{data.get('pretrain_train_blocks')} train, {data.get('pretrain_val_blocks')} validation.",
        "",
        f"Command: `{command or '(run_study called from Python)'}`. Machine: {mach.get('cpu')}, "
        f"{mach.get('cores', '?')} cores, flags {mach.get('cpu_flags')}, torch {mach['torch']} "
        f"({mach['threads']} threads){', GPU ' + mach['gpu'] if mach.get('gpu') else ''}. Code: `{code}`.",
    ]


def _legend(labels: list[str], chance_cols: list[str]) -> str:
    """Units, what forgetting means, chance levels and the columns at chance in every cell."""
    blimp = (
        " (higher = forgot more); BLiMP forgetting = the SFT model's BLiMP accuracy minus its base's, in points "
        "(lower = forgot more)"
        if T.BLIMP_FORGETTING in labels
        else ""
    )
    return (
        "Benchmarks and token accuracy in %, losses in nats; `x / -` rows are the pretrained bases. Forgetting = the "
        "SFT model's pretraining validation loss minus its base's"
        + blimp
        + ". Chance: MMLU 25, ARC-Easy ≈ 25, GSM8K 0, HumanEval 0"
        + (", BLiMP 50 (overall and each field)" if "BLiMP acc" in labels else "")
        + "."
        + (
            f" **At chance for every 2×2 cell: {', '.join(chance_cols)}** — these columns carry no signal."
            if chance_cols
            else ""
        )
    )


def _remedy_lines(values: dict, remedies: list[str], labels: list[str], rem: list[dict]) -> list[str]:
    """The remedy arms beside AdamW/AdamW, AdamW/Muon and Muon/Muon, their paired table and statements."""
    if not remedies:
        return []
    return [
        "## Remedy arms on the AdamW base",
        "",
        *_table(values, ["adamw / adamw", "adamw / muon", *remedies, "muon / muon"], labels),
        "",
        "| remedy | against | metric | remedy − reference [95 % CI] | remedy is |",
        "|---|---|---|---|---|",
        *[f"| {r['remedy']} | {r['reference']} | {r['metric']} | {r['ci']} | {r['status']} |" for r in rem],
        "",
        *[f"- {s}" for s in T.remedy_statement(rem)],
        "",
    ]


def _repro_lines(primary: list[dict], repro: list[str], seeds: list[int], chance_cols: list[str]) -> list[str]:
    """What reproduces (the plain summary and every claimed ordering) beside Moonlight's Table 6."""
    moon = ["| pretrain / SFT | MMLU | HumanEval | MBPP | GSM8K |", "|---|---|---|---|---|"] + [
        f"| {k} | " + " | ".join(f"{v:g}" for v in vals) + " |" for k, vals in MOONLIGHT_TABLE6.items()
    ]
    return [
        "## What reproduces",
        "",
        "An ordering reproduces only when the 95 % interval of the paired difference excludes 0 in the claimed "
        "direction (matched optimizers better, as in Moonlight Table 6 and arXiv 2605.06654).",
        "",
        *T.plain_summary(primary, seeds, chance_cols),
        "",
        "Every claimed ordering:",
        "",
        *[f"- {s}" for s in repro],
        "",
        "Moonlight Table 6 (16B-A3B MoE, 1.2T tokens) for reference:",
        "",
        *moon,
        "",
    ]


def _contrast_lines(rows: list[dict]) -> list[str]:
    return [
        "## Paired differences (a − b, by seed; 95 % t interval, bootstrap beside it)",
        "",
        "| contrast | metric | claim | a − b [95 % CI] | verdict |",
        "|---|---|---|---|---|",
        *[f"| {r['contrast']} | {r['metric']} | {r['claim']} | {r['ci']} | {r['verdict']} |" for r in rows],
        "",
    ]


def _chosen_lrs(units: list[dict]) -> dict:
    keys = ("chosen_lr", "sweep", "extended", "at_edge", "grid", "derived_from")
    return {
        f"seed{u['seed']} {u['pair']}": {k: u["info"].get(k) for k in keys} for u in units if "chosen_lr" in u["info"]
    }


def write_report(cfg, root: Path, out: Path, log=print, command: str | None = None) -> Path:
    """``report.md``, ``results.json``, the PNG plots and the model cards for every seed finished under ``root``."""
    out.mkdir(parents=True, exist_ok=True)
    col = collect(cfg, root)
    values, counts = col["values"], col["counts"]
    lay = _layout(cfg, values)
    labels = lay["labels"]
    stat_labels = [x for x in labels if x not in ("pretrain val ppl", "pretrain val loss")]
    rows = T.contrasts(values, counts, stat_labels)
    rem = T.remedy_rows(values, [x for x in T.PRIMARY if x in labels])
    data = json.loads((root / "data" / DONE).read_text()) if (root / "data" / DONE).exists() else {}
    mach, code = machine(), commit()
    hardware = (
        mach.get("gpu") or f"{mach.get('cpu')} ({', '.join(mach.get('cpu_flags', []))}; {mach['threads']} threads)"
    )
    plots = write_plots(col, out)
    cards = _cards(cfg, col, hardware)
    chance_cols = [lab for lab in labels if T.at_chance(values, [p for p in T.MAIN_PAIRS if p in values], lab, counts)]
    primary = [r for r in rows if r["metric"] in T.PRIMARY]
    repro = [
        f"{r['contrast']}, {r['metric']}: {r['verdict']} ({r['claim']} claimed; a − b = {r['ci']})" for r in primary
    ]
    setup = _setup_lines(cfg, data, mach, code, command)
    md = [
        f"# Optimizer-mismatch study: {cfg.name}",
        "",
        f"Seeds aggregated: {col['seeds']} (every seed finished under the output dir). " + setup[0],
        *setup[1:],
        "",
        "## Results (mean ± std over seeds)",
        "",
        *_table(values, lay["main"], labels),
        "",
        _legend(labels, chance_cols),
        "",
        "## Learning rates (each cell tuned on the SFT validation slice)",
        "",
        *_lr_lines(col["units"]),
        "",
        *_contrast_lines(rows),
    ]
    if "BLiMP acc" in labels:
        md += ["## BLiMP beside the loss columns", "", *T.blimp_agreement(rows, col["seeds"]), ""]
    md += _remedy_lines(values, lay["remedies"], labels, rem)
    md += _repro_lines(primary, repro, col["seeds"], chance_cols)
    md += ["## Plots", "", *[f"![{p}]({p})" for p in plots], "", "## Model cards", ""]
    md += [f"- `{n}`: {p}" for n, p in cards]
    (out / "report.md").write_text("\n".join(md) + "\n")
    results = dict(seeds=col["seeds"], values=values, contrasts=rows, remedies=rem, lrs=_chosen_lrs(col["units"]))
    results |= dict(reproduces=repro, at_chance=chance_cols, data=data, machine=mach, commit=code, command=command)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    log(f"[report] {out / 'report.md'}")
    return out
