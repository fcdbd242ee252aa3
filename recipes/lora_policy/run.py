"""Evidence for the default ``lora_policy`` of ``--optim muon --use_peft``.

Per seed: an AdamW-pretrained base (the study's pretrain stage), then LoRA SFT (the study's SFT stage) for each
arm and lr of ``config.yaml``: LoRA with AdamW, and LoRA with Muon under ``lora_policy`` ``b_only`` (lora_B on
Muon, lora_A on AdamW) and ``both``. Held-out assistant-token loss (token-weighted mean NLL) is computed per
conversation; the held-out rows are split by position into a validation half (even positions: picks each arm's
lr) and a test half (odd positions: reported). Resumable: finished runs are skipped.

    python recipes/lora_policy/run.py [--config recipes/lora_policy/config.yaml] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def heldout_losses(model_dir: str, cfg) -> list[tuple[float, int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_muon.lab.data import resolve_data_dir
    from hf_muon.lab.evaluation.sft_loss import evaluate_sft_loss

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    res = evaluate_sft_loss(
        model,
        tok,
        data_dir=resolve_data_dir(cfg.data_dir),
        heldout_fraction=cfg.sft.heldout_fraction,
        max_length=cfg.sft.max_length,
        progress=False,
        log_samples=True,
    )
    return [(s["nll"], s["tokens"]) for s in res["samples"]]


def finished(f: Path, seed: int, arm: str, lr: float) -> dict:
    pairs = json.loads(f.read_text())
    return {"seed": seed, "arm": arm, "lr": lr, "val": mean_loss(pairs[0::2]), "test": mean_loss(pairs[1::2])}


def mean_loss(pairs) -> float:
    return sum(n for n, _ in pairs) / max(sum(t for _, t in pairs), 1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE / "config.yaml"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    spec = yaml.safe_load(Path(a.config).read_text())
    from hf_muon.lab.study import pipeline as P
    from hf_muon.lab.study.config import StudyConfig, _build  # noqa: PLC2701

    base_cfg = _build(StudyConfig, dict(spec["study"], **({"output_dir": a.out} if a.out else {})), "").validate()
    root = Path(base_cfg.output_dir)
    tok = P.load_tokenizer(base_cfg)
    data = P.pretrain_blocks(base_cfg, tok)
    train_rows, _, _ = P.sft_rows(base_cfg)
    for seed in base_cfg.seeds:
        base = P.pretrain(base_cfg, tok, data, seed, "adamw", root / f"seed{seed}", print)
        for arm, (opt, policy) in spec["arms"].items():
            for lr in spec["lrs"]:
                out = root / f"seed{seed}" / f"lora-{arm}-lr{lr:g}"
                cfg = _build(
                    StudyConfig,
                    dict(
                        spec["study"],
                        output_dir=str(root),
                        sft=dict(spec["study"]["sft"], lora_policy=policy, lrs={"adamw": lr, "muon": lr}),
                    ),
                    "",
                ).validate()
                info = P.sft_run(cfg, tok, train_rows, seed, base, opt, True, out)
                f = out / "heldout.json"
                if not f.exists():
                    f.write_text(json.dumps(heldout_losses(info["model_dir"], cfg)))
                r = finished(f, seed, arm, lr)
                print(f"seed {seed} {arm:7s} lr {lr:g}: val {r['val']:.4f} test {r['test']:.4f}", flush=True)
    runs = [
        finished(f, int(f.parts[-3][4:]), f.parts[-2].split("-")[1], float(f.parts[-2].split("-lr")[1]))
        for f in sorted(root.glob("seed*/lora-*/heldout.json"))
    ]  # every finished run, also of earlier grids
    return summarize(spec, runs, HERE / "results")


def summarize(spec, runs, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    arms = {}
    complete = [
        s
        for s in sorted({r["seed"] for r in runs})  # seeds whose every arm ran its full grid
        if all({r["lr"] for r in runs if r["seed"] == s and r["arm"] == a} >= set(spec["lrs"]) for a in spec["arms"])
    ]
    for arm in spec["arms"]:
        per_seed = {}
        for seed in complete:
            mine = [r for r in runs if r["arm"] == arm and r["seed"] == seed]
            best = min(mine, key=lambda r: r["val"])  # lr chosen on the validation half only
            per_seed[seed] = best
        tests = [b["test"] for b in per_seed.values()]
        lrs = [b["lr"] for b in per_seed.values()]
        arms[arm] = {
            "test_mean": statistics.mean(tests),
            "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "chosen_lrs": lrs,
            "per_seed_test": tests,
            "edge": any(
                lr in (min(r["lr"] for r in runs if r["arm"] == arm), max(r["lr"] for r in runs if r["arm"] == arm))
                for lr in lrs
            ),
        }
    ref = arms["adamw"]["per_seed_test"]
    for r in arms.values():
        r["paired_diff_vs_adamw"] = [t - b for t, b in zip(r["per_seed_test"], ref)]
    muon_arms = [k for k in arms if k != "adamw"]
    pick = min(muon_arms, key=lambda k: arms[k]["test_mean"])
    result = {"config": spec, "runs": runs, "complete_seeds": complete, "arms": arms, "chosen_default": pick}
    (out_dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# LoRA policy for `--optim muon --use_peft`",
        "",
        f"LoRA SFT (r = {spec['study']['sft']['lora_r']}, all linear layers, {spec['study']['sft']['epochs']} epochs on "
        f"the local tulu-3 rows) of an AdamW-pretrained Llama ({spec['study']['model']});",
        "lr per arm chosen on the validation half of the held-out rows, test half reported (mean ± std over seeds).",
        f"Seeds with every arm done: {complete}; every finished lr of each arm counts (grids widened after seed 0).",
        "",
        "| arm | test loss | chosen lrs | paired diff vs LoRA+AdamW |",
        "|---|---|---|---|",
    ]
    for arm, r in arms.items():
        diffs = ", ".join(f"{d:+.4f}" for d in r["paired_diff_vs_adamw"])
        lines.append(f"| {arm} | {r['test_mean']:.4f} ± {r['test_std']:.4f} | {r['chosen_lrs']} | {diffs} |")
    lines += ["", f"Muon policy with the lower test loss: **{pick}** (the default `lora_policy` follows it)."]
    if any(r["edge"] for r in arms.values()):
        lines.append("Note: at least one chosen lr sits at an edge of the grid.")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
