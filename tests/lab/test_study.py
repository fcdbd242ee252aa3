"""The mismatch study: the whole 2x2 on a tiny config, malformed tulu rows, resume after a kill, model cards."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, data_dir, llama_for

from hf_muon.lab.study import load_config, run_study
from hf_muon.lab.study.cards import validate_card

TINY = REPO / "recipes" / "mismatch" / "tiny.yaml"


def test_tiny_study_end_to_end(tmp_path):
    """Every arm of tiny.yaml: the 2x2, LoRA, p=1/2, warm start, lr x1/2 and x1/4, with lr grids and extensions."""
    cfg = load_config(
        TINY,
        {
            "output_dir": str(tmp_path / "run"),
            "data_dir": str(data_dir()),
            "model_cards_dir": str(tmp_path / "cards"),
        },
    )
    report = run_study(cfg, log=lambda *a: None, command="hf-muon study tiny.yaml")
    text = (report / "report.md").read_text()
    pairs = (
        "adamw / adamw",
        "adamw / muon",
        "muon / adamw",
        "muon / muon",
        "adamw / -",
        "muon / -",
        "adamw / muon (LoRA)",
        "adamw / adamw (LoRA)",
        "adamw / muon (p=½)",
        "adamw / muon (warm start)",
        "adamw / muon (lr×½)",
        "adamw / muon (lr×¼)",
    )
    for pair in pairs:
        assert f"| {pair} |" in text, pair
    for heading in (
        "## Paired differences",
        "## Remedy arms on the AdamW base",
        "## What reproduces",
        "## Learning rates",
        "SFT test token acc",
        "forgetting (Δ pretrain val loss)",
        "Command: `hf-muon study tiny.yaml`",
        "n=1, no interval",
        "BLiMP acc",
        "BLiMP syntax-semantics",
        "BLiMP forgetting (Δ acc)",
        "## BLiMP beside the loss columns",
        "BLiMP 50",
    ):
        assert heading in text, heading
    for png in ("loss_curves.png", "scores.png", "remedies.png", "blimp.png"):
        assert (report / png).stat().st_size > 1000
    cards = sorted((tmp_path / "cards").glob("*.md"))
    assert len(cards) == len(pairs)
    for card in cards:
        validate_card(card)
        assert "dataset:\n      name: BLiMP" in card.read_text() or "name: BLiMP" in card.read_text(), card
    assert "acc, syntax-semantics (0-shot)" in cards[0].read_text()
    results = json.loads((report / "results.json").read_text())
    sft = results["data"]["sft"]
    assert (sft["val"], sft["test"]) == (8, 8) and sft["rows"] == 200 and len(sft["files"]) == 2
    assert sft["train"] == sft["unique"] - sft["no_target"] - 16
    assert results["seeds"] == [0] and results["machine"]["cpu"] and results["commit"]
    run = tmp_path / "run" / "seed0"
    base = json.loads((run / "base-muon" / "DONE.json").read_text())
    assert base["chosen_lr"] in [float(k) for k in base["sweep"]] and {"0.003", "0.01"} <= set(base["sweep"])
    assert set(base["sweep"]) == {"0.003", "0.01", *(f"{x:g}" for x in base["extended"])}
    for cell in ("sft-adamw-adamw", "sft-adamw-muon", "sft-muon-muon", "sft-adamw-muon-warm_start"):
        info = json.loads((run / cell / "DONE.json").read_text())
        assert len(info["sweep"]) >= 2 and info["chosen_lr"] in [float(k) for k in info["sweep"]], cell
    warm = json.loads((run / "sft-adamw-muon-warm_start" / "DONE.json").read_text())
    assert warm["warm_started"] > 0
    ref = json.loads((run / "sft-adamw-muon" / "DONE.json").read_text())["chosen_lr"]
    assert json.loads((run / "sft-adamw-muon-lr_quarter" / "DONE.json").read_text())["lr"] == pytest.approx(
        ref / 4, rel=1e-3
    )
    import torch

    state = torch.load(base["optimizer_state"], weights_only=True)
    assert len(state["param_names"]) == len(state["state_dict"]["state"]) > 0
    scores = json.loads((run / "sft-adamw-muon" / "scores.json").read_text())
    assert 0 <= scores["sft_loss"]["acc"] <= 1 and scores["sft_loss"]["n_scored"] == 8
    assert scores["blimp"]["n_scored"] == 67 and set(scores["blimp"]["acc_by_field"]) == {
        "morphology",
        "syntax",
        "semantics",
        "syntax_semantics",
    }
    blimp_forgetting = results["values"]["adamw / muon"]["BLiMP forgetting (Δ acc)"]["0"]
    base_blimp = json.loads((run / "base-adamw" / "scores.json").read_text())["blimp"]["acc"]
    assert blimp_forgetting == pytest.approx(100 * (scores["blimp"]["acc"] - base_blimp))
    # a re-run does no work: every unit is marked done
    t = time.time()
    run_study(cfg, log=lambda *a: None)
    assert time.time() - t < 30


def test_malformed_tulu_rows_are_counted_and_skipped(tmp_path):
    mirror = tmp_path / "data"
    shutil.copytree(data_dir() / "tokenizers", mirror / "tokenizers")
    (mirror / "sft").mkdir(parents=True)
    good = (data_dir() / "sft" / "tulu3_sft_mixture_sample.jsonl").read_text().splitlines()[:20]
    bad = [
        "{not json",
        json.dumps(
            {
                "id": "b1",
                "messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}],
            }
        ),
        json.dumps({"id": "b2", "messages": [{"role": "user", "content": "only a question"}]}),
        json.dumps(
            {
                "id": "b3",
                "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}],
            }
        ),
        json.dumps({"id": "b4", "messages": "not a list"}),
    ]
    (mirror / "sft" / "tulu3_sft_mixture_sample.jsonl").write_text("\n".join(good[:10] + bad + good[10:]) + "\n")
    from hf_muon.lab.study.sftdata import load_sft_rows

    cfg = load_config(TINY, {"data_dir": str(mirror), "sft": {"mirror_file": "sft/tulu3_sft_mixture_sample.jsonl"}})
    rows, report = load_sft_rows(cfg)
    assert report["rows"] == 25 and report["malformed"] == 5 and len(rows) == 20
    assert all(any(m["role"] == "assistant" and m["content"].strip() for m in r["messages"]) for r in rows)


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain: {stepz: 3}\n")
    with pytest.raises(ValueError, match=r"unknown config key 'pretrain.stepz'.*valid keys: corpus"):
        load_config(bad)
    bad.write_text("optimizers: [adamw, lion]\n")
    with pytest.raises(ValueError, match="'lion' is not valid; valid: adamw, muon"):
        load_config(bad)
    bad.write_text("pretrain: {corpus: books3}\n")
    with pytest.raises(ValueError, match="valid: tinystories, c4"):
        load_config(bad)


def test_shipped_configs_load():
    for f in sorted((REPO / "recipes" / "mismatch").glob("*.yaml")):
        load_config(f)


def test_card_validation_rejects_missing_metadata(tmp_path):
    p = tmp_path / "README.md"
    p.write_text("---\nlicense: apache-2.0\n---\n# no tags\n")
    with pytest.raises(ValueError, match="lacks 'tags'"):
        validate_card(p)


@pytest.mark.slow
def test_killed_study_resumes_and_skips_finished_units(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, HF_MUON_DATA=str(data_dir()), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "hf_muon.cli", "study", str(TINY), "--output-dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "seed0" / "sft-adamw-adamw" / "DONE.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the first SFT unit never finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "report" / "report.md").exists()
    stamps = {p: p.stat().st_mtime for p in out.glob("seed0/*/DONE.json")}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "report" / "report.md").exists()
    for p, mtime in stamps.items():
        assert p.stat().st_mtime == mtime, f"{p} was redone"
    assert len(list(out.glob("seed0/sft-*/DONE.json"))) == 10  # the 2x2 + LoRA pair + four remedy arms


@pytest.mark.slow
def test_public_base_mode_with_a_local_tiny_model(tmp_path):
    """public_base.yaml's code path (SFT a pretrained checkpoint with each optimizer), on a tiny local model."""
    import torch

    from hf_muon.lab.data import load_tokenizer

    tok = load_tokenizer(data_dir())
    torch.manual_seed(0)
    llama_for(tok, tmp_path / "base", num_key_value_heads=4, max_position_embeddings=256)
    cfg = load_config(
        REPO / "recipes" / "mismatch" / "public_base.yaml",
        {
            "output_dir": str(tmp_path / "run"),
            "data_dir": str(data_dir()),
            "model": {"base_model": str(tmp_path / "base")},
            "sft": {
                "mirror_file": "sft/tulu3_sft_mixture_sample.jsonl",
                "max_steps": 2,
                "batch_size": 2,
                "max_length": 64,
                "lrs": {"adamw": 1e-3, "muon": 1e-3},
                "lora": True,
                "max_extensions": 0,
            },
            "eval": {
                "tasks": ["arc_easy"],
                "limit": {"arc_easy": 2, "perplexity": 2, "sft_loss": 2},
                "batch_size": 2,
            },
        },
    )
    report = run_study(cfg, log=lambda *a: None)
    text = (report / "report.md").read_text()
    for pair in (
        "pretrained / adamw",
        "pretrained / muon",
        "pretrained / adamw (LoRA)",
        "pretrained / muon (LoRA)",
    ):
        assert f"| {pair} |" in text


def test_card_metric_names_carry_the_shot_count_the_run_used():
    from hf_muon.lab.study.cards import eval_results

    scores = {
        "mmlu": {"acc": 0.3, "config": {"num_fewshot": 1}},
        "gsm8k": {"strict-match": 0.0, "config": {"num_fewshot": 0}},
        "arc_easy": {"acc": 0.25, "acc_norm": 0.2},
    }  # no recorded config: no shot claim
    names = {r.dataset_name + " " + r.metric_name for r in eval_results(scores, "tinystories")}
    assert names == {
        "MMLU acc (1-shot)",
        "GSM8K exact_match, strict-match (0-shot)",
        "ARC-Easy acc",
        "ARC-Easy acc_norm",
    }


def test_score_stage_adds_a_new_task_without_rescoring(tmp_path, monkeypatch):
    """A unit scored before BLiMP joined eval.tasks gets only BLiMP on the next score stage, merged in."""
    from hf_muon.lab.study import pipeline

    cfg = load_config(TINY, {"output_dir": str(tmp_path), "data_dir": str(data_dir())})
    old = {
        "mmlu": {"acc": 0.25},
        "arc_easy": {"acc": 0.3},
        "gsm8k": {"strict-match": 0.0},
        "sft_loss": {"loss": 7.0},
        "perplexity": {"loss": 6.0},
    }
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / "scores.json").write_text(json.dumps(old))
    asked = []

    def fake_score(model_dir, tasks, **kw):
        asked.append(list(tasks))
        return {t: {"acc": 0.6, "acc_by_field": {"syntax": 0.6}, "samples": [1]} for t in tasks}

    monkeypatch.setattr("hf_muon.lab.evaluation.cli.score", fake_score)
    got = pipeline.score(cfg, "unused", tmp_path / "unit", True)
    assert asked == [["blimp"]] and got == {**old, "blimp": {"acc": 0.6, "acc_by_field": {"syntax": 0.6}}}
    assert json.loads((tmp_path / "unit" / "scores.json").read_text()) == got
    assert pipeline.score(cfg, "unused", tmp_path / "unit", True) == got and asked == [["blimp"]]


@pytest.mark.slow
def test_score_stage_with_the_lm_eval_backend_matches_native(tmp_path):
    """eval.backend: lm-eval runs lm-evaluation-harness itself in the study's score stage; same scores as native."""
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install 'hf_muon[lmeval]')")
    import torch

    from hf_muon.lab.data import load_tokenizer
    from hf_muon.lab.study import pipeline

    tok = load_tokenizer(data_dir())
    torch.manual_seed(0)
    llama_for(tok, tmp_path / "model", num_key_value_heads=4, max_position_embeddings=256)
    scores = {}
    for backend in ("native", "lm-eval"):
        cfg = load_config(
            TINY,
            {
                "output_dir": str(tmp_path / backend),
                "data_dir": str(data_dir()),
                "eval": {
                    "tasks": ["arc_easy"],
                    "limit": {"arc_easy": 6, "perplexity": 2, "sft_loss": 2},
                    "batch_size": 2,
                    "backend": backend,
                },
            },
        )
        scores[backend] = pipeline.score(cfg, str(tmp_path / "model"), tmp_path / backend / "score", True)
    assert scores["lm-eval"]["arc_easy"]["backend"] == "lm-eval" and scores["native"]["arc_easy"]["backend"] == "native"
    for metric in ("acc", "acc_norm"):
        assert scores["lm-eval"]["arc_easy"][metric] == scores["native"]["arc_easy"][metric]
    assert scores["lm-eval"]["sft_loss"]["loss"] == pytest.approx(scores["native"]["sft_loss"]["loss"])
