"""Evaluation layer: bundled metrics (pure cores + offline evaluate modules), log-likelihood scoring against a
brute-force computation, task prompt formats on real mirror rows, the code-execution sandbox, malformed rows."""

import json
import math
import os
import shutil
import subprocess
import sys
from itertools import product

import pytest
import torch
from conftest import REPO, child_env, data_dir, free_port, llama_for

from hf_muon.lab import metrics as M
from hf_muon.lab.evaluation import arc, gsm8k, humaneval, mmlu, sources
from hf_muon.lab.evaluation.generation import generate_until, truncate_at_stop
from hf_muon.lab.evaluation.loglik import encode_pair, loglikelihood, loglikelihood_tokens
from hf_muon.lab.evaluation.perplexity import sequence_nll
from hf_muon.lab.evaluation.runner import evaluate_model
from hf_muon.lab.evaluation.sandbox import CodeExecutionNotAllowed, run_program
from hf_muon.lab.evaluation.sft_loss import split_indices, tokenize_conversation

# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tok():
    from hf_muon.lab.data import load_tokenizer

    return load_tokenizer(data_dir())


@pytest.fixture(scope="module")
def model(tok):
    """A tiny random Llama over the real GPT-2 vocabulary (built from a config, never downloaded)."""
    torch.manual_seed(0)
    shape = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1)
    return llama_for(tok, max_position_embeddings=512, **shape).eval()


def _rows(path, n=None):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if n is not None and len(out) == n:
                break
    return out


# ----------------------------------------------------------------------------------------------- gsm8k metric


@pytest.mark.parametrize(
    "generation, expected",
    [
        ("She has 3 + 4 = 7 apples.\n#### 1,000", "1,000"),  # #### wins over other numbers
        ("#### 18\nQuestion: how many? 42", "18"),  # first ####, not the last number
        ("so the total is 5. The answer is $18.", "$18"),  # "The answer is"
        ("5 apples and 7 pears make 12.", "12"),  # else the last number
        ("It costs $1,234.50 in total", "$1,234.50"),
        ("they lose -3 points", "-3"),
        ("1,2,3", "3"),  # not a thousands group: three numbers
        ("no digits here", None),
        ("", None),
    ],
)
def test_gsm8k_extract_answer(generation, expected):
    assert M.extract_answer(generation) == expected


def test_gsm8k_exact_match_formats(shared_data):
    assert M.gsm8k_match("#### 1,000", "blah\n#### 1000")
    assert M.gsm8k_match("The answer is 1000.0", "#### 1,000")
    assert M.gsm8k_match("so she pays $18.", "#### 18")
    assert M.gsm8k_match("50%", "50")
    assert M.gsm8k_match("#### .5", "0.5")
    assert not M.gsm8k_match("#### 17", "#### 18")
    assert not M.gsm8k_match("no number", "#### 18")
    assert not M.gsm8k_match("#### 18", None)
    assert M.normalize_number("1,000.") == M.normalize_number("1000.00")
    rows = _rows(shared_data / "benchmarks/gsm8k/test.jsonl", 3)
    assert [M.extract_reference(r["answer"]) for r in rows] == ["18", "3", "70000"]
    # the reference solutions themselves score 1; shuffled references score 0
    assert M.gsm8k_exact_match([r["answer"] for r in rows], [r["answer"] for r in rows]) == {"exact_match": 1.0}
    assert M.gsm8k_exact_match([r["answer"] for r in rows], [r["answer"] for r in rows[1:] + rows[:1]]) == {
        "exact_match": 0.0
    }
    assert M.gsm8k_exact_match([], []) == {"exact_match": 0.0}


@pytest.mark.parametrize(
    "generation, strict, flexible",
    [
        ("She has 3 + 4 = 7 apples.\n#### 1,000", "1,000", "1,000"),
        ("#### 18\nQuestion: how many? 42", "18", "42"),  # strict: first ####; flexible: last number
        ("####42", "[invalid]", "42"),  # strict needs "#### " with a space
        ("#### $42", "[invalid]", "$42"),  # ... and no "$"
        ("so the total is 5. The answer is $18.", "[invalid]", "$18."),
        ("-3 and 4.5, so 7", "[invalid]", "7"),  # a lone digit matches the second group
        ("it is 12.\n\nMore text 1", "[invalid]", "1"),
        ("no digits here", "[invalid]", "[invalid]"),
        ("", "[invalid]", "[invalid]"),
    ],
)
def test_gsm8k_harness_filters(generation, strict, flexible):
    assert M.strict_extract(generation) == strict
    assert M.flexible_extract(generation) == flexible


def test_gsm8k_harness_exact_match():
    ref = "Janet makes 9 * 2 = $<<9*2=18>>18.\n#### 1,018"
    assert M.gsm8k_harness_match("so #### 1,018", ref, "strict-match")
    assert M.gsm8k_harness_match("#### 1018.", ref, "strict-match")  # trailing "." ignored
    assert not M.gsm8k_harness_match("#### 1018.0", ref, "strict-match")  # string, not numeric, equality
    assert M.gsm8k_match("#### 1018.0", ref)  # ... the lenient numeric_match
    assert M.gsm8k_harness_match("pays $1,018.", ref, "flexible-extract")
    assert not M.gsm8k_harness_match("####1018", ref, "strict-match") and M.gsm8k_match("####1018", ref)
    assert M.harness_exact_match("ABC", "abc", ignore_case=True) and not M.harness_exact_match("ABC", "abc")
    assert M.harness_exact_match("a.b", "ab", ignore_punctuation=True)
    assert M.harness_exact_match("18 ", "18 ") and not M.harness_exact_match("18 ", "18")
    gens, refs = ["#### 18", "The answer is 18", "#### 17"], ["#### 18"] * 3
    assert M.gsm8k_harness_scores(gens, refs) == {"strict-match": 1 / 3, "flexible-extract": 2 / 3}
    assert M.gsm8k_harness_scores([], []) == {"strict-match": 0.0, "flexible-extract": 0.0}


# ----------------------------------------------------------------------------------------------- mc_accuracy


def test_mc_accuracy_acc_vs_acc_norm_and_ties():
    # " freeze." / " start to boil and turn into steam." / " boil.": the long choice loses on summed
    # log-likelihood but wins per character.
    lls = [[-3.0, -6.1, -3.2]]
    lens = [[7.0, 34.0, 5.0]]  # characters of the choice text without the leading space
    assert M.mc_accuracy(lls, [1], choice_lengths=lens) == {"acc": 0.0, "acc_norm": 1.0}
    assert M.mc_accuracy(lls, [0], choice_lengths=lens) == {"acc": 1.0, "acc_norm": 0.0}
    # ties go to the lowest index
    assert M.mc_predict([-1.0, -1.0, -2.0]) == 0
    assert M.mc_accuracy([[-1.0, -1.0]], [0]) == {"acc": 1.0}
    assert M.mc_accuracy([[-1.0, -1.0]], [1]) == {"acc": 0.0}
    assert M.mc_predict([-2.0, -4.0], [1, 2]) == 0  # normalised tie -1 == -2/2 -> lowest index
    # NaN is never chosen
    assert M.mc_predict([float("nan"), -5.0]) == 1
    # choices "é" (1 character, 2 UTF-8 bytes, 1 token) and "ab" (2 characters, 2 bytes, say 3 tokens):
    # characters and bytes disagree on non-ASCII text
    out = M.mc_accuracy(
        [[-2.0, -3.0]], [1], choice_lengths=[[1, 2]], choice_byte_lengths=[[2, 2]], choice_token_lengths=[[1, 3]]
    )
    assert out == {"acc": 0.0, "acc_norm": 1.0, "acc_bytes": 0.0, "acc_per_token": 1.0}
    # averaging over examples
    assert M.mc_accuracy([[-1.0, -2.0], [-5.0, -4.0]], [0, 0], choice_lengths=[[1, 1], [1, 10]]) == {
        "acc": 0.5,
        "acc_norm": 0.5,
    }
    with pytest.raises(ValueError, match="out of range"):
        M.mc_accuracy([[-1.0, -2.0]], [2])
    with pytest.raises(ValueError, match="positive"):
        M.mc_accuracy([[-1.0, -2.0]], [0], choice_lengths=[[0, 1]])


# ----------------------------------------------------------------------------------------------- pass@k


def test_pass_at_k_values():
    assert M.estimate_pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert M.estimate_pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    assert M.estimate_pass_at_k(10, 0, 5) == 0.0
    assert M.estimate_pass_at_k(5, 4, 2) == 1.0  # n - c < k
    for n, c, k in product(range(1, 12), range(0, 12), range(1, 12)):
        if c <= n and k <= n:
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert M.estimate_pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    # large n stays finite and accurate (the binomials would overflow floats)
    assert M.estimate_pass_at_k(2000, 1, 1) == pytest.approx(1 / 2000)
    out = M.pass_at_k([5, 5], [2, 0], ks=[1, 2, 10])
    assert out["pass@1"] == pytest.approx(0.2) and out["pass@2"] == pytest.approx(0.35)
    assert "pass@10" not in out  # k > n is undefined, left out (as in human-eval / code_eval)
    with pytest.raises(ValueError):
        M.estimate_pass_at_k(3, 4, 1)


def test_local_metric_modules_load_offline(monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    em = M.load("gsm8k_exact_match")
    # lm-eval's strict-match needs "#### N"; flexible-extract takes the last number ("$1,000." -> "1000")
    assert em.compute(predictions=["So she pays $1,000.", "#### 7"], references=["#### 1000", "#### 8"]) == {
        "strict-match": 0.0,
        "flexible-extract": 0.5,
        "numeric_match": 0.5,
    }
    mc = M.load("mc_accuracy")
    assert mc.compute(predictions=[[-3.0, -6.1, -3.2]], references=[1], choice_lengths=[[7, 34, 5]]) == {
        "acc": 0.0,
        "acc_norm": 1.0,
    }
    pk = M.load("pass_at_k")
    out = pk.compute(num_samples=[5], num_correct=[2], k=[1, 2])
    assert out["pass@1"] == pytest.approx(0.4) and out["pass@2"] == pytest.approx(0.7)
    for name in M.METRICS:  # one import per line in every module script (evaluate's dependency scan)
        src = (M.metric_path(name) / f"{name}.py").read_text()
        assert not [ln for ln in src.splitlines() if ln.startswith("import ") and "," in ln]


# ----------------------------------------------------------------------------------------------- log-likelihood


def _brute_force(model, ctx, cont, max_length):
    """Per-token: one forward pass per continuation token on exactly its (unpadded) prefix of the window."""
    window = (ctx + cont)[-(max_length + 1) :][:-1]
    total, greedy = 0.0, True
    for j, target in enumerate(cont):
        prefix = window[: len(window) - len(cont) + j + 1]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prefix])).logits[0, -1].double()
        logp = logits.log_softmax(-1)
        total += logp[target].item()
        greedy &= int(logits.argmax()) == target
    return total, greedy


def test_loglikelihood_matches_brute_force(model, tok):
    long_ctx = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)
    mc = "Question: Which is a mammal?\nAnswer:"
    requests = [
        ("Question: What is 2+2?\nAnswer:", " 4"),
        ("The capital of France is ", "Paris, a large city."),  # trailing space moves to the continuation
        ("", "Hello world"),  # empty context -> one prefix token
        (long_ctx, " And then it slept."),  # left-truncated when max_length is small
        (mc, " A"),
        (mc, " B"),
        (mc, " whale"),  # shared context (dedup path)
    ]
    for max_length in (512, 24):
        got = loglikelihood(model, tok, requests, batch_size=3, max_length=max_length, progress=False)
        for (c, x), r in zip(requests, got):
            ctx, cont = encode_pair(tok, c, x)
            want, greedy = _brute_force(model, ctx, cont, max_length)
            assert r.num_tokens == len(cont)
            assert r.logprob == pytest.approx(want, abs=5e-5), (c[-20:], x, max_length)
            assert r.is_greedy == greedy
    # order/batching invariance
    one = loglikelihood(model, tok, requests, batch_size=1, max_length=512, progress=False)
    many = loglikelihood(model, tok, requests[::-1], batch_size=7, max_length=512, progress=False)[::-1]
    assert [a.logprob for a in one] == pytest.approx([b.logprob for b in many], abs=1e-5)
    # is_greedy: continuing with the model's own argmax tokens is greedy, with any other token is not
    ctx = tok("Once upon a time")["input_ids"]
    with torch.no_grad():
        g1 = int(model(input_ids=torch.tensor([ctx])).logits[0, -1].argmax())
        g2 = int(model(input_ids=torch.tensor([ctx + [g1]])).logits[0, -1].argmax())
    greedy, other = loglikelihood_tokens(model, [(ctx, [g1, g2]), (ctx, [g1, (g2 + 1) % len(tok)])], progress=False)
    assert greedy.is_greedy and not other.is_greedy and greedy.logprob > other.logprob


def test_encode_pair_split_trick(tok):
    assert encode_pair(tok, "Answer: ", "A") == encode_pair(tok, "Answer:", " A")
    ctx, cont = encode_pair(tok, "Answer:", " A")
    assert ctx == tok("Answer:")["input_ids"] and cont == tok(" A")["input_ids"]
    # the continuation is the tail of the joint tokenization
    ctx, cont = encode_pair(tok, "Question: x\nAnswer:", " Paris")
    assert ctx + cont == tok("Question: x\nAnswer: Paris")["input_ids"]
    assert encode_pair(tok, "", "Hi")[0] == [tok.eos_token_id]  # GPT-2: BOS == EOS == <|endoftext|>


@pytest.fixture(scope="module")
def bos_tok():
    """A Llama-style tokenizer: the GPT-2 BPE plus a distinct BOS "<s>" that it prepends by default."""
    from transformers import GPT2TokenizerFast

    t = GPT2TokenizerFast.from_pretrained(str(data_dir() / "tokenizers" / "gpt2"), bos_token="<s>", add_bos_token=True)
    assert t("hi")["input_ids"][0] == t.bos_token_id != t.eos_token_id
    return t


def test_bos_follows_the_tokenizer_default(tok, bos_tok):
    """lm-eval's HFLM add_bos_token=None: the tokenizer's default special tokens; add_bos overrides."""
    from hf_muon.lab.evaluation._runtime import encode

    bos = bos_tok.bos_token_id
    plain = tok("Question: x\nAnswer:", add_special_tokens=False)["input_ids"]
    ctx, cont = encode_pair(bos_tok, "Question: x\nAnswer:", " Paris")
    assert ctx == [bos] + plain and ctx + cont == bos_tok("Question: x\nAnswer: Paris")["input_ids"]
    assert encode_pair(bos_tok, "Question: x\nAnswer:", " Paris", add_bos=False)[0] == plain
    assert encode_pair(tok, "Question: x\nAnswer:", " Paris")[0] == plain  # GPT-2 adds nothing
    assert encode_pair(tok, "Question: x\nAnswer:", " Paris", add_bos=True)[0] == [tok.bos_token_id] + plain
    assert encode(bos_tok, "<s>hi") == bos_tok("<s>hi", add_special_tokens=False)["input_ids"]  # no second BOS
    assert encode(bos_tok, "hi", for_generation=True)[0] == bos
    # empty context: the prefix token (BOS), and the continuation without special tokens
    assert encode_pair(bos_tok, "", "Hi") == ([bos], bos_tok("Hi", add_special_tokens=False)["input_ids"])


def test_tasks_take_add_bos(model, tok, bos_tok, shared_data):
    """Every lm-eval task passes add_bos through; with a BOS-adding tokenizer the default gets BOS."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    m = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(bos_tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=512,
        )
    ).eval()
    runs = {
        b: evaluate_model(
            m, bos_tok, ["arc_easy"], data_dir=shared_data, limit=2, add_bos=b, progress=False, log_samples=True
        )["arc_easy"]
        for b in (None, True, False)
    }
    assert runs[None]["samples"] == runs[True]["samples"] != runs[False]["samples"]
    assert runs[None]["config"]["add_bos"] is None and runs[False]["config"]["add_bos"] is False
    # GPT-2: default == no BOS
    a = evaluate_model(model, tok, ["arc_easy"], data_dir=shared_data, limit=2, progress=False, log_samples=True)
    b = evaluate_model(
        model, tok, ["arc_easy"], data_dir=shared_data, limit=2, add_bos=False, progress=False, log_samples=True
    )
    assert a["arc_easy"]["samples"] == b["arc_easy"]["samples"]


def test_fewshot_samplers():
    from hf_muon.lab.evaluation.harness import fewshot_draws

    pool = list(range(10))
    assert fewshot_draws(pool, 3, 2, sampler="first_n") == [[0, 1, 2], [0, 1, 2]]
    import random

    rnd = random.Random(1234)
    assert fewshot_draws(pool, 3, 4) == [rnd.sample(pool, 3) for _ in range(4)]
    # pool == scored split: the document is never its own exemplar
    draws = fewshot_draws(pool, 9, 10, docs=pool)
    assert all(d not in shots and len(shots) == 9 for d, shots in zip(pool, draws))
    assert fewshot_draws(pool, 0, 2) == [[], []]
    with pytest.raises(ValueError, match="pool has"):
        fewshot_draws(pool, 11, 1)


def test_loglikelihood_with_accelerator_matches(model, tok):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    requests = [("Question: 1+1?\nAnswer:", f" {i}") for i in range(5)] + [("Once upon a time", " there was")]
    plain = loglikelihood(model, tok, requests, batch_size=4, progress=False)
    sharded = loglikelihood(model, tok, requests, batch_size=4, accelerator=acc, progress=False)
    assert [r.logprob for r in plain] == pytest.approx([r.logprob for r in sharded], abs=1e-6)


def test_sequence_nll_matches_hf_loss(model):
    torch.manual_seed(1)
    seqs = [torch.randint(0, 1000, (n,)).tolist() for n in (9, 5, 12)]
    masks = [[i % 2 == 0 for i in range(len(s))] for s in seqs]
    got = sequence_nll(model, seqs, masks, batch_size=2, progress=False)
    for s, m, (nll, n) in zip(seqs, masks, got):
        labels = torch.tensor([t if keep else -100 for t, keep in zip(s, m)])
        labels[0] = -100
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([s]), labels=labels[None]).loss.item()
        assert n == int((labels != -100).sum())
        assert nll / n == pytest.approx(ref, abs=1e-4)


def test_generation_batched_equals_single_and_stops(model, tok):
    prompts = ["Question: Janet has 3 ducks.\nAnswer:", "def f(x):\n", "Once upon a time there was a little"]
    single = [generate_until(model, tok, [p], max_new_tokens=6, batch_size=1, progress=False)[0] for p in prompts]
    batched = generate_until(model, tok, prompts, max_new_tokens=6, batch_size=3, progress=False)
    assert batched == single
    stopped = generate_until(model, tok, prompts, stop=["e"], max_new_tokens=12, batch_size=3, progress=False)
    assert all("e" not in g[0] for g in stopped)
    assert truncate_at_stop("abc\ndef g\n#x", ["\n#", "\ndef "]) == "abc"


# ----------------------------------------------------------------------------------------------- prompt formats


def test_mmlu_prompt_format_on_real_rows(shared_data):
    test, pool, reports = mmlu.load(shared_data, limit=2)
    assert len(test) == 57 * 2 and all(r.malformed == 0 for r in reports)
    ex = test[0]
    assert ex["subject"] == "abstract_algebra" and ex["answer"] == 1
    prompt = mmlu.build_prompt(ex, pool["abstract_algebra"][:5])
    head = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
    )
    tail = (
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q."
        "\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert prompt.startswith(head) and prompt.endswith("\n\n" + tail)
    assert prompt.count("Answer:") == 6 and prompt.count("\n\n") == 6
    assert mmlu.build_prompt(ex, []) == head.split("\n\n")[0] + "\n\n" + tail


def test_arc_prompt_format_on_real_rows(shared_data):
    rows, report = arc.load(shared_data, "test")
    assert len(rows) == 2376 and report.malformed == 0
    ex = rows[0]
    assert arc.build_prompt(ex) == (
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:"
    )
    assert ex["gold"] == 0 and ex["choices"][0] == "Sunlight is the source of energy for nearly all ecosystems."
    numeric = next(r for r in rows if r["id"] == "NYSEDREGENTS_2015_8_28")  # labels "1".."4", answerKey "2"
    assert numeric["gold"] == 1 and numeric["choices"][1] == "elements"


def test_gsm8k_prompt_and_fewshot_from_train(shared_data):
    """lm-eval gsm8k: every test row scored; document i's exemplars are the i-th Random(1234).sample(train, k)."""
    import random

    train_raw = _rows(shared_data / "benchmarks/gsm8k/train.jsonl")
    test_raw = _rows(shared_data / "benchmarks/gsm8k/test.jsonl", 3)
    pool, scored, reports = gsm8k.load(shared_data)
    assert len(pool) == 7473 and len(scored) == 1319 and all(r.malformed == 0 for r in reports)
    assert scored[0]["question"] == test_raw[0]["question"]
    prompts = gsm8k.fewshot_prompts(scored[:3], pool, 2)
    rnd = random.Random(1234)
    for raw, prompt in zip(test_raw, prompts):
        shots = rnd.sample(train_raw, 2)
        assert prompt == (
            f"Question: {shots[0]['question']}\nAnswer: {shots[0]['answer']}\n\n"
            f"Question: {shots[1]['question']}\nAnswer: {shots[1]['answer']}\n\n"
            f"Question: {raw['question']}\nAnswer:"
        )
    assert gsm8k.fewshot_prompts(scored[:2], pool, 2) == prompts[:2]  # --limit keeps the exemplars
    assert gsm8k.build_prompt("Q?", []) == "Question: Q?\nAnswer:"
    assert gsm8k.load(shared_data, limit=3)[1] == scored[:3]
    assert gsm8k.load(shared_data, need_train=False)[0] == []
    assert gsm8k.STOP == ("Question:", "</s>", "<|im_end|>")  # no "\n\n": a CoT may continue after a blank line


def test_sft_heldout_split_and_assistant_mask(shared_data, tok):
    assert list(split_indices(100)) == list(range(90, 100))
    assert list(split_indices(100, "train")) == list(range(90))
    msgs = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    ids, mask, truncated = tokenize_conversation(tok, msgs)
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "4<|endoftext|>" and not truncated
    assert tok.chat_template is None  # the template is passed per call, the tokenizer is untouched


# ----------------------------------------------------------------------------------------------- sandbox


def test_sandbox(shared_data, monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    rows, _ = humaneval.load(shared_data, limit=1)
    ex = rows[0]
    with pytest.raises(CodeExecutionNotAllowed, match="allow_code_execution=True"):
        run_program(humaneval.build_program(ex, ex["canonical_solution"]))
    ok = run_program(humaneval.build_program(ex, ex["canonical_solution"]), allow_code_execution=True)
    assert ok.status == "passed" and ok.passed
    wrong = run_program(humaneval.build_program(ex, "    return False\n"), allow_code_execution=True)
    assert wrong.status == "failed" and "AssertionError" in wrong.stderr_tail
    loop = run_program("while True:\n    pass\n", timeout=1.0, allow_code_execution=True)
    assert loop.status == "timeout" and loop.duration_s < 5
    sleeper = run_program("import time\ntime.sleep(60)\n", timeout=1.0, allow_code_execution=True)
    assert sleeper.status == "timeout" and sleeper.duration_s < 5
    bomb = run_program(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n",
        memory_mb=512,
        timeout=10.0,
        allow_code_execution=True,
    )
    assert bomb.status == "memory" and not bomb.passed
    probe = run_program(
        "import os, sys\nassert os.listdir('.') == []\nassert sys.flags.isolated\n"
        "assert 'HF_ALLOW_CODE_EVAL' not in os.environ\n",
        allow_code_execution=True,
    )
    assert probe.passed, probe.stderr_tail
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")  # evaluate's code_eval switch also opts in
    assert run_program("pass").passed


def test_evaluate_model_requires_opt_in_before_running(model, tok, monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    with pytest.raises(CodeExecutionNotAllowed, match="HF_ALLOW_CODE_EVAL=1"):
        evaluate_model(model, tok, ["arc_easy", "humaneval"], data_dir=data_dir(), limit=1, progress=False)


# ----------------------------------------------------------------------------------------------- malformed rows


def test_malformed_rows_counted_and_skipped(tmp_path, shared_data, model, tok):
    good = _rows(shared_data / "benchmarks/gsm8k/test.jsonl", 10)
    lines = [json.dumps(r) for r in good[:9]] + [
        "{not json",
        json.dumps({"question": "q"}),
        json.dumps({"question": "q", "answer": "no final answer"}),
        json.dumps([1, 2]),
        json.dumps({"question": "q", "answer": "#### many"}),
        json.dumps(good[9]),
    ]
    (tmp_path / "benchmarks/gsm8k").mkdir(parents=True)
    (tmp_path / "benchmarks/gsm8k/test.jsonl").write_text("\n".join(lines) + "\n\n")
    pool, scored, (report,) = gsm8k.load(tmp_path, need_train=False)
    assert report.rows == 15 and report.malformed == 5 and pool == [] and len(scored) == 10
    assert report.reasons[0].startswith("line 10: not valid JSON")

    arc_dir = tmp_path / "benchmarks/arc"
    arc_dir.mkdir(parents=True)
    src = _rows(shared_data / "benchmarks/arc/ARC-Easy.validation.hf_schema.jsonl", 3)
    bad_key = dict(src[0], answerKey="Z")
    bad_choices = dict(src[1], choices={"text": ["only one"], "label": ["A"]})
    arc_lines = [json.dumps(src[0]), json.dumps(bad_key), "oops", json.dumps(bad_choices), json.dumps(src[2])]
    (arc_dir / "ARC-Easy.validation.hf_schema.jsonl").write_text("\n".join(arc_lines) + "\n")
    res = evaluate_model(
        model,
        tok,
        ["arc_easy"],
        data_dir=tmp_path,
        task_options={"arc_easy": {"split": "validation"}},
        progress=False,
        log_samples=True,
    )["arc_easy"]
    assert res["n_scored"] == 2 and res["n_malformed"] == 3 and len(res["samples"]) == 2
    assert {"acc", "acc_norm", "n_scored", "n_malformed", "data", "config", "elapsed_s"} <= res.keys()

    shutil.copytree(shared_data / "benchmarks/mmlu", tmp_path / "benchmarks/mmlu")
    with pytest.raises(FileNotFoundError, match="HumanEval.jsonl.gz"):  # a data dir lacking a file never downloads
        humaneval.load(tmp_path)


def test_arc_challenge_needs_its_file(shared_data, model, tok):
    if (shared_data / arc.file_for("arc_challenge", "test")).exists():
        res = evaluate_model(model, tok, ["arc_challenge"], data_dir=shared_data, limit=2, progress=False)
        assert res["arc_challenge"]["lm_eval"]["task"] == "arc_challenge"
    else:
        with pytest.raises(FileNotFoundError, match="ARC-Challenge.test.hf_schema.jsonl"):
            evaluate_model(model, tok, ["arc_challenge"], data_dir=shared_data, limit=2, progress=False)
    with pytest.raises(FileNotFoundError, match="ARC-Easy.train.hf_schema.jsonl"):  # k-shot needs the train split
        evaluate_model(
            model,
            tok,
            ["arc_easy"],
            data_dir=shared_data,
            limit=2,
            progress=False,
            task_options={"arc_easy": {"num_fewshot": 1}},
        )


def test_score_cli_native(tmp_path, model, tok, shared_data):
    from hf_muon.lab.evaluation import cli

    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "scores.json"
    cli.main(
        [
            str(tmp_path / "m"),
            "--tasks",
            "arc_easy,gsm8k",
            "--limit",
            "arc_easy=3,gsm8k=1",
            "--data-dir",
            str(shared_data),
            "--set",
            "gsm8k.max_new_tokens=4",
            "--set",
            "gsm8k.num_fewshot=1",
            "--output",
            str(out),
        ]
    )
    got = json.loads(out.read_text())
    assert list(got) == ["arc_easy", "gsm8k"] and got["arc_easy"]["n_scored"] == 3
    assert got["gsm8k"]["config"]["num_fewshot"] == 1 and got["gsm8k"]["config"]["max_new_tokens"] == 4
    assert all(r["backend"] == "native" and r["follows"].startswith("lm-eval 0.4.13") for r in got.values())
    want = evaluate_model(model, tok, ["arc_easy"], data_dir=shared_data, limit=3, progress=False)["arc_easy"]
    assert got["arc_easy"]["acc"] == want["acc"] and got["arc_easy"]["acc_norm"] == want["acc_norm"]
    assert cli._parse_limit("5") == 5 and cli._parse_limit("mmlu=1,gsm8k=2") == {"mmlu": 1, "gsm8k": 2}
    assert cli._parse_options(["gsm8k.num_fewshot=0", "humaneval.ks=[1, 2]"]) == {
        "gsm8k": {"num_fewshot": 0},
        "humaneval": {"ks": [1, 2]},
    }


def test_hub_fallback_runs_the_same_parser(monkeypatch, shared_data):
    """With no data dir, rows come from datasets.load_dataset (faked here: no network) and take the same path."""
    monkeypatch.delenv("HF_MUON_DATA", raising=False)
    seen = []

    def fake_hub(spec):
        seen.append((spec.name, spec.config, spec.split))
        for i, line in enumerate(open(shared_data / f"benchmarks/gsm8k/{spec.split}.jsonl", encoding="utf-8")):
            yield i, json.loads(line)

    monkeypatch.setattr(sources, "iter_hub", fake_hub)
    pool, scored, reports = gsm8k.load(None, limit=5)
    local = gsm8k.load(shared_data, limit=5)
    assert seen == [("openai/gsm8k", "main", "test"), ("openai/gsm8k", "main", "train")]
    assert [r.source for r in reports] == ["hub:openai/gsm8k/main[test]", "hub:openai/gsm8k/main[train]"]
    assert (pool, scored) == local[:2]


# ----------------------------------------------------------------------------------------------- end to end


def test_evaluate_model_end_to_end(model, tok, shared_data):
    res = evaluate_model(
        model,
        tok,
        ["mmlu", "gsm8k", "perplexity", "sft_loss", "humaneval"],
        data_dir=shared_data,
        limit={"mmlu": 1, "gsm8k": 2, "perplexity": 3, "sft_loss": 2, "humaneval": 2},
        batch_size=4,
        allow_code_execution=True,
        progress=False,
        task_options={
            "mmlu": {"num_fewshot": 1},
            "gsm8k": {"num_fewshot": 1, "max_new_tokens": 8},
            "humaneval": {"max_new_tokens": 8},
        },
    )
    assert res["mmlu"]["n_scored"] == 57 and len(res["mmlu"]["acc_by_subject"]) == 57
    assert 0.0 <= res["mmlu"]["acc"] <= 1.0
    assert res["gsm8k"]["n_scored"] == 2 and res["gsm8k"]["strict-match"] == 0.0
    assert {"flexible-extract", "numeric_match"} <= res["gsm8k"].keys() and "exact_match" not in res["gsm8k"]
    ln_vocab = math.log(len(tok))  # a random model is near-uniform
    assert res["perplexity"]["blocks"] == 3 and abs(res["perplexity"]["loss"] - ln_vocab) < 0.5
    assert res["sft_loss"]["n_scored"] == 2 and abs(res["sft_loss"]["loss"] - ln_vocab) < 0.5
    assert res["humaneval"]["pass@1"] == 0.0 and sum(res["humaneval"]["status_counts"].values()) == 2
    assert all(r["n_malformed"] == 0 for r in res.values())
    assert res["gsm8k"]["follows"] == "lm-eval 0.4.13 gsm8k v3.0 (strict-match, flexible-extract)"
    assert res["gsm8k"]["lm_eval"]["extra_metrics"] == ["numeric_match"]
    assert (
        res["mmlu"]["follows"].startswith("lm-eval 0.4.13 mmlu") and res["humaneval"]["lm_eval"]["task"] == "humaneval"
    )
    assert res["perplexity"]["lm_eval"] is None and all(r["backend"] == "native" for r in res.values())


_DIST_SCRIPT = """
import json, os, sys
import torch
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM
from hf_muon.lab.data import load_tokenizer
from hf_muon.lab.evaluation import evaluate_model, generate_until, loglikelihood, sequence_nll

out_dir, data = sys.argv[1], sys.argv[2]
acc = Accelerator(cpu=True)
tok = load_tokenizer(data)
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512))
reqs = [("Question: 1+1?\\nAnswer:", f" {i}") for i in range(5)] + [("Once upon a time", " there was"), ("A", " b c")]
prompts = ["Question: Janet has 3 ducks.\\nAnswer:", "def f(x):\\n", "Once upon a time there was a little"]
seqs = [list(range(5, 5 + n)) for n in (9, 5, 12, 3, 7)]
res = {}
for name, a in (("plain", None), ("sharded", acc)):
    ev = evaluate_model(model, tok, ["arc_easy", "gsm8k", "humaneval"], data_dir=data, limit=3, batch_size=2,
                        accelerator=a, allow_code_execution=True, progress=False,
                        task_options={"gsm8k": {"max_new_tokens": 4, "num_fewshot": 1},
                                      "humaneval": {"max_new_tokens": 4}})
    res[name] = {
        "ll": [r.logprob for r in loglikelihood(model, tok, reqs, batch_size=2, accelerator=a, progress=False)],
        "gen": generate_until(model, tok, prompts, max_new_tokens=5, batch_size=1, accelerator=a, progress=False),
        "nll": sequence_nll(model, seqs, batch_size=2, accelerator=a, progress=False),
        "eval": {t: {k: v for k, v in r.items() if k not in ("elapsed_s", "data")} for t, r in ev.items()},
    }
with open(os.path.join(out_dir, f"rank{acc.process_index}.json"), "w") as f:
    json.dump({"world": acc.num_processes, **res}, f)
"""


def test_two_processes_shard_and_gather_like_one(tmp_path, shared_data):
    """torchrun x2 (gloo): uneven shards (padded by accelerate) gather to exactly the single-process results."""
    script = tmp_path / "dist_eval.py"
    script.write_text(_DIST_SCRIPT)
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "torchrun"),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(script),
        str(tmp_path),
        str(shared_data),
    ]
    env = child_env()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["world"] == 2
        assert got["sharded"] == got["plain"]
