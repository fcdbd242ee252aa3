"""BLiMP in the native scorer: sentence scoring against a brute-force sum, the group and field aggregates, the mirror /
Hub path, malformed rows, and ``hf-muon score --tasks blimp``. Parity with lm-eval is in test_lm_eval_parity.py."""

import json

import pytest
import torch
from conftest import data_dir, llama_for

from hf_muon.lab.evaluation import blimp, sources
from hf_muon.lab.evaluation.runner import evaluate_model

PICK = ["anaphor_gender_agreement", "principle_A_case_2", "wh_island"]


@pytest.fixture(scope="module")
def tok():
    from hf_muon.lab.data import load_tokenizer

    return load_tokenizer(data_dir(), vocab_size=1024)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    shape = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1)
    return llama_for(tok, max_position_embeddings=256, **shape).eval()


def _sentence_logprob(model, tok, sentence: str) -> float:
    """log p(" " + sentence | the prefix token), token by token, unbatched, in float64."""
    ids = [tok.bos_token_id] + tok(" " + sentence, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
    return sum(logp[i, t].item() for i, t in enumerate(ids[1:]))


def test_blimp_scores_each_sentence_after_one_prefix_token(model, tok, shared_data):
    res = evaluate_model(
        model,
        tok,
        ["blimp"],
        data_dir=shared_data,
        limit=3,
        batch_size=5,
        progress=False,
        log_samples=True,
        task_options={"blimp": {"paradigms": PICK}},
    )["blimp"]
    assert res["n_scored"] == 9 and res["n_malformed"] == 0 and len(res["data"]) == 3
    for s in res["samples"]:
        want = [
            _sentence_logprob(model, tok, s["sentence_good"]),
            _sentence_logprob(model, tok, s["sentence_bad"]),
        ]
        assert s["loglikelihoods"] == pytest.approx(want, abs=1e-4)
        assert s["pred"] == (0 if s["loglikelihoods"][0] >= s["loglikelihoods"][1] else 1) and s["gold"] == 0
    by_p = {p: [s["pred"] == 0 for s in res["samples"] if s["paradigm"] == p] for p in PICK}
    assert res["acc_by_paradigm"] == {p: sum(v) / 3 for p, v in by_p.items()}
    assert res["acc"] == pytest.approx(sum(res["acc_by_paradigm"].values()) / 3, abs=0)
    # principle_A_case_2's rows say "syntax/semantics": it joins syntax_semantics
    assert res["acc_by_field"] == {
        "morphology": res["acc_by_paradigm"]["anaphor_gender_agreement"],
        "syntax": res["acc_by_paradigm"]["wh_island"],
        "syntax_semantics": res["acc_by_paradigm"]["principle_A_case_2"],
    }
    assert res["n_by_field"] == {"morphology": 3, "syntax": 3, "syntax_semantics": 3}
    assert res["follows"] == "lm-eval 0.4.13 blimp v2.0 (acc)" and res["config"]["paradigms"] == 3
    # BLiMP is BOS-independent: add_bos is not a BLiMP option (the context is always one prefix token)
    with pytest.raises(TypeError, match="add_bos"):
        evaluate_model(
            model,
            tok,
            ["blimp"],
            data_dir=shared_data,
            limit=1,
            progress=False,
            task_options={"blimp": {"add_bos": True}},
        )


def test_blimp_aggregate_is_the_unweighted_paradigm_mean():
    acc = {"a": 1.0, "b": 0.5, "c": 0.0}
    out = blimp.aggregate(acc, {"a": "syntax", "b": "syntax", "c": "semantics"}, {"a": 4, "b": 2, "c": 10})
    assert out["acc"] == 0.5 and out["acc_by_field"] == {"syntax": 0.75, "semantics": 0.0}
    assert out["n_by_field"] == {"syntax": 6, "semantics": 10}


def test_blimp_paradigms_mirror_hub_and_bad_rows(tmp_path, monkeypatch, shared_data):
    assert len(blimp.PARADIGMS) == 67 == len(set(blimp.PARADIGMS))
    assert sorted(p.stem for p in (shared_data / "benchmarks/blimp").glob("*.jsonl")) == sorted(blimp.PARADIGMS)
    with pytest.raises(ValueError, match="unknown paradigm.*'not_a_paradigm'.*adjunct_island"):
        blimp.check_paradigms(["wh_island", "not_a_paradigm"])
    assert blimp.check_paradigms("wh_island,adjunct_island") == ["adjunct_island", "wh_island"]  # group order
    # the Hub path: nyu-mll/blimp, config = paradigm, split train, through the same parser
    seen = []

    def fake_hub(spec):
        seen.append((spec.name, spec.config, spec.split))
        with open(shared_data / blimp.file_for(spec.config), encoding="utf-8") as f:
            for i, line in enumerate(f):
                yield i, json.loads(line)

    monkeypatch.delenv("HF_MUON_DATA", raising=False)
    monkeypatch.setattr(sources, "iter_hub", fake_hub)
    hub, reports = blimp.load(None, limit=5, paradigms=["wh_island"])
    assert (
        seen == [("nyu-mll/blimp", "wh_island", "train")] and reports[0].source == "hub:nyu-mll/blimp/wh_island[train]"
    )
    assert hub == blimp.load(shared_data, limit=5, paradigms=["wh_island"])[0]
    # malformed rows are counted and skipped; identical-sentence pairs are real data and are kept (lm-eval scores them)
    rows = [json.loads(x) for x in (shared_data / blimp.file_for("passive_1")).read_text().splitlines()]
    assert sum(r["sentence_good"] == r["sentence_bad"] for r in rows) == 2
    (tmp_path / "benchmarks/blimp").mkdir(parents=True)
    bad = [
        json.dumps(rows[0]),
        "{oops",
        json.dumps(dict(rows[1], field="phonology")),
        json.dumps({k: v for k, v in rows[2].items() if k != "sentence_bad"}),
        json.dumps(rows[3]),
    ]
    (tmp_path / blimp.file_for("passive_1")).write_text("\n".join(bad) + "\n")
    got, (report,) = blimp.load(tmp_path, paradigms=["passive_1"])
    assert len(got["passive_1"]) == 2 and report.rows == 5 and report.malformed == 3
    with pytest.raises(FileNotFoundError, match="wh_island.jsonl"):  # a data dir lacking a paradigm never downloads
        blimp.load(tmp_path, paradigms=["wh_island"])


def test_score_cli_blimp(tmp_path, model, tok, shared_data):
    from hf_muon.lab.evaluation import cli

    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "scores.json"
    cli.main(
        [
            str(tmp_path / "m"),
            "--tasks",
            "blimp",
            "--limit",
            "2",
            "--data-dir",
            str(shared_data),
            "--set",
            "blimp.paradigms=wh_island,passive_1",
            "--output",
            str(out),
        ]
    )
    got = json.loads(out.read_text())["blimp"]
    assert got["n_scored"] == 4 and set(got["acc_by_paradigm"]) == {"passive_1", "wh_island"}
    assert got["config"]["limit_per_paradigm"] == 2 and got["backend"] == "native"
