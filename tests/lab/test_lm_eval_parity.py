"""Parity with lm-evaluation-harness: hf_muon's native tasks against lm-eval's own objects on the same rows.

* metric pipelines: fixed GSM8K generations (real chain-of-thought answers ending in ``#### N`` plus edge cases) go
  through lm-eval's filter ensembles and ``exact_match`` built from the installed ``gsm8k.yaml``, and through
  hf_muon's definitions: every filtered string and every per-item score must be equal;
* requests: lm-eval's task objects, built from the local YAMLs the lm-eval backend writes (official templates +
  the mirror), must produce exactly the native prompts, continuations, few-shot exemplars and stop sequences;
* model code: ``HFLM`` tokenisation (BOS), log-likelihoods and greedy generations on a tiny model equal the native
  ones, with GPT-2's tokenizer and with a BOS-prepending one;
* end to end (slow): a tiny saved model scored by both backends (``hf-muon score --backend native|lm-eval``):
  per-item predictions identical, log-likelihoods within 1e-4, metrics equal.

Everything is skipped, with the reason, when lm-eval is not installed.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import data_dir

lm_eval = pytest.importorskip(
    "lm_eval",
    reason="lm-evaluation-harness is not installed (pip install 'lm-eval==0.4.13'): parity not checked",
)

from hf_muon.lab import metrics as M  # noqa: E402
from hf_muon.lab.evaluation import arc, blimp, gsm8k, humaneval, mmlu  # noqa: E402
from hf_muon.lab.evaluation.generation import generate_until  # noqa: E402
from hf_muon.lab.evaluation.harness import LM_EVAL_VERSION  # noqa: E402
from hf_muon.lab.evaluation.lm_eval_backend import lm_eval_version, official_task_dir, write_task_configs  # noqa: E402
from hf_muon.lab.evaluation.loglik import encode_pair, loglikelihood  # noqa: E402

LL_TOL = 1e-4
# one BLiMP paradigm per field, including principle_A_case_2, whose rows spell the field "syntax/semantics"
BLIMP_PICK = ("anaphor_gender_agreement", "npi_present_1", "principle_A_case_2", "wh_island")


def _jsonl(path, n=None):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if n is not None and len(out) == n:
                break
    return out


def _gpt2(**kwargs):
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(data_dir() / "tokenizers" / "gpt2"), **kwargs)


def _bos_gpt2():
    """Llama-style: a distinct BOS "<s>" prepended by default (survives save_pretrained / AutoTokenizer)."""
    return _gpt2(bos_token="<s>", add_bos_token=True)


def _tiny_llama(vocab: int, layers: int = 2, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=50256,
        eos_token_id=50256,
    )
    return LlamaForCausalLM(cfg).eval()


# ----------------------------------------------------------------------------------------------- GSM8K metrics
def _generations(shared) -> tuple[list[str], list[str]]:
    """(generation, reference answer) pairs: real CoT answers that end in "#### N" (scored against their own and
    against other references), plus the formats where strict-match, flexible-extract and numeric_match differ."""
    train = _jsonl(shared / "benchmarks/gsm8k/train.jsonl", 40)
    test = _jsonl(shared / "benchmarks/gsm8k/test.jsonl", 40)
    gens, refs = [], []
    for i, row in enumerate(train):
        gens.append(row["answer"])  # hit: a solution scored against itself
        refs.append(row["answer"])
        gens.append(row["answer"])  # miss (mostly): against another question's answer
        refs.append(train[(i + 1) % len(train)]["answer"])
    gold = test[0]["answer"]  # "... #### 18"
    n = M.extract_reference(gold)
    crafted = [
        f"#### {n}",
        f"####{n}",
        f"#### ${n}",
        f"The answer is {n}.",
        f"so she makes ${n}.",
        f"#### {n}.",
        f"#### {n}.00",
        f"#### {n}\nQuestion: what about 7?",
        f"First 3 + 4 = 7.\n\nThen #### {n}",
        f"-{n}",
        f"#### 1,{n}",
        f"{n},",
        f"It is {n}!\n#### 12",
        f"#### 12\nor maybe {n}",
        "no numbers at all",
        "",
        f"#### -{n}",
        f"{n} apples and 2 pears",
        f"<<9*2={n}>>{n}",
        f"#### {n} dollars",
    ]
    for g in crafted:
        gens.append(g)
        refs.append(gold)
    gens.append("#### 1,000")
    refs.append("She pays 10 * 100 = $<<10*100=1000>>1000.\n#### 1000")
    return gens, refs


def test_gsm8k_metrics_equal_lm_eval_filters_and_exact_match(shared_data):
    from lm_eval.api.registry import get_metric
    from lm_eval.filters import build_filter_ensemble
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(official_task_dir() / "gsm8k" / "gsm8k.yaml")
    assert [f["name"] for f in cfg["filter_list"]] == list(M.HARNESS_FILTERS)
    (metric_cfg,) = cfg["metric_list"]
    kwargs = {k: v for k, v in metric_cfg.items() if k not in ("metric", "aggregation", "higher_is_better")}
    assert kwargs == {
        "ignore_case": True,
        "ignore_punctuation": False,
        "regexes_to_ignore": list(M.EXACT_MATCH_KWARGS["regexes_to_ignore"]),
    }
    exact_match = get_metric(metric_cfg["metric"])

    gens, refs = _generations(shared_data)
    docs = [{"question": "q", "answer": r} for r in refs]
    native, items = gsm8k.score_generations(gens, refs)
    for f in cfg["filter_list"]:
        ensemble = build_filter_ensemble(
            f["name"], [[x["function"], {k: v for k, v in x.items() if k != "function"}] for x in f["filter"]]
        )
        resps = [[g] for g in gens]
        for step in ensemble.filters:
            resps = step().apply(resps, docs)
        filtered = list(resps)
        assert filtered == [it["filtered"][f["name"]] for it in items], f["name"]
        scores = [
            float(exact_match(references=[r], predictions=[p], **kwargs)["exact_match"]) for p, r in zip(filtered, refs)
        ]
        assert scores == [it[f["name"]] for it in items], f["name"]
        assert native[f["name"]] == pytest.approx(sum(scores) / len(scores), abs=0)
    # the slice is not trivial: hits, misses, and items where the three metrics disagree
    assert 0 < native["strict-match"] < native["flexible-extract"] < 1
    assert any(it["strict-match"] != it["numeric_match"] for it in items)


# ----------------------------------------------------------------------------------------------- requests
@pytest.fixture(scope="module")
def lm_tasks(tmp_path_factory):
    """lm-eval task objects built from the backend's local YAMLs (official templates + mirror rows)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    shared = data_dir()
    work = tmp_path_factory.mktemp("lm_eval_tasks")
    names = {}
    names["mmlu"] = write_task_configs("mmlu", work, data_dir=shared, limit=1)[0]
    names["arc_easy"] = write_task_configs("arc_easy", work, data_dir=shared, limit=12)[0]
    names["gsm8k"] = write_task_configs("gsm8k", work, data_dir=shared, limit=12)[0]
    names["humaneval"] = write_task_configs("humaneval", work, data_dir=shared, limit=3)[0]
    names["blimp"] = [f"blimp_{p}" for p in BLIMP_PICK]
    write_task_configs("blimp", work, data_dir=shared, limit=4, options={"paradigms": list(BLIMP_PICK)})
    manager = TaskManager(include_path=str(work), include_defaults=False)
    flat = [n for ns in names.values() for n in ns]
    built = get_task_dict(flat, manager)
    out = {}
    for name in flat:
        task = built[name]
        task.set_fewshot_seed(1234)  # as simple_evaluate(fewshot_random_seed=1234)
        task.build_all_requests(rank=0, world_size=1)
        out[name] = task
    return names, out


def _requests_by_doc(task):
    by_doc: dict[int, list] = {}
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        by_doc.setdefault(inst.doc_id, []).append(inst.args)
    return [by_doc[k] for k in sorted(by_doc)]


def test_requests_equal_native_prompts(lm_tasks, shared_data):
    names, tasks = lm_tasks
    # MMLU: 5-shot first_n from the subject's dev rows, " A".." D"
    test, pool, _ = mmlu.load(shared_data, limit=1)
    got = [args for n in names["mmlu"] for args in _requests_by_doc(tasks[n])]
    assert len(got) == len(test) == 57
    for ex, reqs in zip(test, got):
        prompt = mmlu.build_prompt(ex, pool[ex["subject"]][:5])
        assert reqs == [(prompt, f" {letter}") for letter in mmlu.LETTERS]
    # ARC-Easy: 0-shot, " " + choice text
    rows, _ = arc.load(shared_data, "test", 12)
    got = _requests_by_doc(tasks["arc_easy"])
    assert got == [[(arc.build_prompt(ex), " " + c) for c in ex["choices"]] for ex in rows]
    # GSM8K: 5-shot from train, Random(1234) stream document by document; until; greedy
    pool, rows, _ = gsm8k.load(shared_data, 12)
    got = _requests_by_doc(tasks["gsm8k"])
    assert [r[0][0] for r in got] == gsm8k.fewshot_prompts(rows, pool, 5)
    gen_kwargs = got[0][0][1]
    assert gen_kwargs["until"] == list(gsm8k.STOP) and gen_kwargs["do_sample"] is False
    assert gen_kwargs.get("max_gen_toks", gsm8k.MAX_NEW_TOKENS) == gsm8k.MAX_NEW_TOKENS  # HFLM.max_gen_toks = 256
    # HumanEval: the prompt alone; until; max_gen_toks; greedy
    rows, _ = humaneval.load(shared_data, 3)
    got = _requests_by_doc(tasks["humaneval"])
    assert [r[0][0] for r in got] == [ex["prompt"] for ex in rows]
    gen_kwargs = got[0][0][1]
    assert gen_kwargs["until"] == list(humaneval.STOP) and gen_kwargs["max_gen_toks"] == humaneval.MAX_NEW_TOKENS
    assert gen_kwargs["do_sample"] is False
    # BLiMP: empty context, " " + each sentence, grammatical first
    by_paradigm, _ = blimp.load(shared_data, 4, BLIMP_PICK)
    for p in BLIMP_PICK:
        got = _requests_by_doc(tasks[f"blimp_{p}"])
        assert got == [[("", " " + ex["good"]), ("", " " + ex["bad"])] for ex in by_paradigm[p]], p


# ----------------------------------------------------------------------------------------------- model code
@pytest.mark.parametrize("tokenizer", ["gpt2", "bos"])
def test_hflm_tokenisation_loglik_and_generation_equal_native(tokenizer, shared_data):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    tok, lm_tok = (_gpt2(), _gpt2()) if tokenizer == "gpt2" else (_bos_gpt2(), _bos_gpt2())
    model = _tiny_llama(len(tok), layers=1)
    lm = HFLM(pretrained=model, tokenizer=lm_tok, batch_size=4, device="cpu")
    rows, _ = arc.load(shared_data, "validation", 3)
    pairs = [(arc.build_prompt(ex), " " + c) for ex in rows for c in ex["choices"]]
    pairs += [("The capital of France is ", "Paris."), ("", "Hello world"), ("Question: 2+2?\nAnswer:", " 4")]
    for c, x in pairs:
        if c:
            assert tuple(lm._encode_pair(c, x)) == encode_pair(tok, c, x), (c[-20:], x)
    if tokenizer == "bos":
        assert encode_pair(tok, *pairs[0])[0][0] == tok.bos_token_id  # the default really adds BOS here
    reqs = [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(pairs)]
    theirs = lm.loglikelihood(reqs, disable_tqdm=True)
    ours = loglikelihood(model, tok, pairs, batch_size=4, progress=False)
    assert [float(a) for a, _ in theirs] == pytest.approx([r.logprob for r in ours], abs=LL_TOL)
    assert [bool(g) for _, g in theirs] == [r.is_greedy for r in ours]
    prompts = ["Question: Janet has 3 ducks.\nAnswer:", "def add(a, b):\n", "Once upon a time"]
    gen_kwargs = {"until": ["Question:", "\n\n"], "do_sample": False, "max_gen_toks": 10}
    reqs = [Instance("generate_until", {}, (p, dict(gen_kwargs)), i) for i, p in enumerate(prompts)]
    lm.batch_size_per_gpu = 1  # one prompt per forward pass on both sides: no padding round-off
    theirs = lm.generate_until(reqs, disable_tqdm=True)
    ours = [
        g[0]
        for g in generate_until(
            model, tok, prompts, stop=gen_kwargs["until"], max_new_tokens=10, batch_size=1, progress=False
        )
    ]
    assert theirs == ours


# ----------------------------------------------------------------------------------------------- end to end
def _save_tiny(tmp_path, tokenizer: str):
    tok = _gpt2() if tokenizer == "gpt2" else _bos_gpt2()
    model = _tiny_llama(len(tok))
    out = tmp_path / f"model-{tokenizer}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _compare_mc(a: dict, b: dict):
    assert len(a["samples"]) == len(b["samples"]) == a["n_scored"] == b["n_scored"] > 0
    worst = 0.0
    for x, y in zip(a["samples"], b["samples"]):
        assert x["prompt"] == y["prompt"] and x["gold"] == y["gold"] and x["pred"] == y["pred"]
        assert x.get("pred_norm") == y.get("pred_norm")
        worst = max(worst, max(abs(p - q) for p, q in zip(x["loglikelihoods"], y["loglikelihoods"])))
    assert worst <= LL_TOL
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["gpt2", "bos"])
def test_both_backends_score_a_saved_model_identically(tmp_path, tokenizer, shared_data, monkeypatch):
    from hf_muon.lab.evaluation.cli import score

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    model_dir = _save_tiny(tmp_path, tokenizer)
    tasks = ["mmlu", "arc_easy", "gsm8k", "humaneval"]
    if (shared_data / arc.file_for("arc_challenge", "test")).exists():
        tasks.insert(2, "arc_challenge")
    common = dict(
        data_dir=shared_data,
        limit={"mmlu": 1, "arc_easy": 16, "arc_challenge": 16, "gsm8k": 3, "humaneval": 2},
        batch_size=1,
        task_options={"gsm8k": {"max_new_tokens": 12}, "humaneval": {"max_new_tokens": 12}},
        allow_code_execution=True,
        log_samples=True,
        device="cpu",
    )
    common["limit"] = {t: n for t, n in common["limit"].items() if t in tasks}
    native = score(model_dir, tasks, backend="native", **common)
    lm = score(model_dir, tasks, backend="lm-eval", **common)
    drop = ("samples", "config", "elapsed_s", "follows", "lm_eval", "backend")
    installed = lm_eval_version()
    for t in tasks:
        assert native[t]["backend"] == "native" and lm[t]["backend"] == "lm-eval"
        assert native[t]["lm_eval"]["version"] == LM_EVAL_VERSION and lm[t]["lm_eval"]["version"] == installed
        assert {k: v for k, v in lm[t]["lm_eval"].items() if k != "version"} == {
            k: v for k, v in native[t]["lm_eval"].items() if k != "version"
        }, t
        assert {k: v for k, v in native[t].items() if k not in drop} == {
            k: v for k, v in lm[t].items() if k not in drop
        }, t
    for t in ("mmlu", "arc_easy", "arc_challenge"):
        if t in tasks:
            _compare_mc(native[t], lm[t])
    for x, y in zip(native["gsm8k"]["samples"], lm["gsm8k"]["samples"], strict=True):
        assert x["prompt"] == y["prompt"] and x["generation"] == y["generation"] and x["filtered"] == y["filtered"]
        assert [x[k] for k in M.HARNESS_FILTERS] == [y[k] for k in M.HARNESS_FILTERS]
    assert [s["completions"] for s in native["humaneval"]["samples"]] == [
        s["completions"] for s in lm["humaneval"]["samples"]
    ]


def _compare_blimp(native: dict, lm: dict) -> float:
    """Per pair: same sentences, identical prediction; log-likelihoods within LL_TOL; metrics equal exactly."""
    assert len(native["samples"]) == len(lm["samples"]) == native["n_scored"] == lm["n_scored"] > 0
    worst = 0.0
    for x, y in zip(native["samples"], lm["samples"]):
        assert (x["paradigm"], x["sentence_good"], x["sentence_bad"], x["field"]) == (
            y["paradigm"],
            y["sentence_good"],
            y["sentence_bad"],
            y["field"],
        )
        assert x["pred"] == y["pred"] and x["gold"] == y["gold"] == 0
        worst = max(worst, max(abs(p - q) for p, q in zip(x["loglikelihoods"], y["loglikelihoods"])))
    assert worst <= LL_TOL
    for key in ("acc", "acc_by_paradigm", "acc_by_field", "n_by_field", "n_scored", "n_malformed", "data"):
        assert native[key] == lm[key], key
    assert native["lm_eval"] == lm["lm_eval"] | {"version": LM_EVAL_VERSION}
    return worst


@pytest.mark.parametrize("tokenizer", ["gpt2", "bos"])
def test_blimp_both_backends_identical(tmp_path, tokenizer, shared_data):
    """``hf-muon score --tasks blimp``, native vs ``--backend lm-eval`` (official blimp YAMLs + a local group with
    the official aggregate), on a few paradigms: identical predictions and group / paradigm / field scores."""
    from hf_muon.lab.evaluation.cli import score

    model_dir = _save_tiny(tmp_path, tokenizer)
    common = dict(
        data_dir=shared_data,
        limit=6,
        batch_size=4,
        log_samples=True,
        device="cpu",
        task_options={"blimp": {"paradigms": list(BLIMP_PICK)}},
    )
    native = score(model_dir, ["blimp"], backend="native", progress=False, **common)["blimp"]
    lm = score(model_dir, ["blimp"], backend="lm-eval", **common)["blimp"]
    assert native["backend"] == "native" and lm["backend"] == "lm-eval"
    assert set(native["acc_by_field"]) == set(blimp.FIELDS) and native["n_scored"] == 24
    _compare_blimp(native, lm)


@pytest.mark.slow
def test_blimp_all_paradigms_both_backends_identical(tmp_path, shared_data):
    """All 67 paradigms (limit 20 each), and the two paradigms with identical-sentence pairs in full."""
    from hf_muon.lab.evaluation.cli import score

    model_dir = _save_tiny(tmp_path, "gpt2")
    for limit, paradigms in ((20, None), (None, ["passive_1", "principle_A_case_2"])):
        common = dict(
            data_dir=shared_data,
            limit=limit,
            batch_size=8,
            log_samples=True,
            device="cpu",
            task_options={"blimp": {"paradigms": paradigms}} if paradigms else None,
        )
        native = score(model_dir, ["blimp"], backend="native", progress=False, **common)["blimp"]
        lm = score(model_dir, ["blimp"], backend="lm-eval", **common)["blimp"]
        _compare_blimp(native, lm)
        assert native["n_scored"] == (67 * 20 if limit else 2000)


# ----------------------------------------------------------------------------------------------- BOS, loaded objects
@pytest.mark.parametrize("add_bos", [True, False])
def test_loaded_objects_get_the_same_bos_as_native_and_the_folder_path(add_bos, shared_data, tmp_path):
    """``evaluate_with_lm_eval(model, tokenizer=tok, add_bos=...)`` with a GPT-2 tokenizer object (which adds no
    BOS by default) scores what native scoring and the model-folder path score: lm-eval honours
    ``add_bos_token`` only when it loads the tokenizer itself."""
    from hf_muon.lab.evaluation import evaluate_model
    from hf_muon.lab.evaluation.lm_eval_backend import evaluate_with_lm_eval

    tok = _gpt2()
    model = _tiny_llama(len(tok), layers=1)
    common = dict(data_dir=shared_data, limit=3, batch_size=1, add_bos=add_bos, log_samples=True)
    native = evaluate_model(model, tok, ["arc_easy"], progress=False, **common)["arc_easy"]
    objects = evaluate_with_lm_eval(model, ["arc_easy"], tokenizer=tok, device="cpu", **common)["arc_easy"]
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    folder = evaluate_with_lm_eval(tmp_path / "m", ["arc_easy"], device="cpu", **common)["arc_easy"]
    assert _compare_mc(native, objects) <= LL_TOL
    assert _compare_mc(native, folder) <= LL_TOL
    assert tok.encode("Question:")[0] != tok.bos_token_id  # the object itself was not changed
