"""The believable mismatch study: lr grids with edge extension, validation-only selection, paired statistics and
their wording, the AdamW-moment warm start, SFT data from both files (deduplicated, malformed rows counted)."""

import json
import math

import pytest
import torch
from conftest import REPO, data_dir, weights_only_resume

from hf_muon.lab.metrics.paired import bootstrap_interval, format_ci, paired_contrast, t_interval, verdict
from hf_muon.lab.study import load_config
from hf_muon.lab.study.sweep import edge_extension, grid_ratio, run_sweep
from hf_muon.lab.study.tables import contrasts, judge, plain_summary, remedy_rows, remedy_statement

TINY = REPO / "recipes" / "mismatch" / "tiny.yaml"


# ------------------------------------------------------------------------------------------- sweeps
def test_edge_extension_is_a_pure_rule():
    assert grid_ratio([1e-3, 2e-3, 4e-3]) == pytest.approx(2.0)
    assert edge_extension({1e-3: 3.0, 2e-3: 2.0, 4e-3: 2.5}, 2.0) is None  # interior optimum
    assert edge_extension({1e-3: 3.0, 2e-3: 2.0, 4e-3: 1.5}, 2.0) == pytest.approx(8e-3)  # top edge: up
    assert edge_extension({1e-3: 1.0, 2e-3: 2.0, 4e-3: 2.5}, 2.0) == pytest.approx(5e-4)  # bottom edge: down
    assert edge_extension({1e-3: math.nan, 2e-3: math.inf}, 2.0) == pytest.approx(5e-4)  # all diverged: down
    assert edge_extension({1e-3: 2.0, 2e-3: math.nan}, 2.0) == pytest.approx(5e-4)  # a diverged run never wins


def test_run_sweep_extends_until_the_optimum_is_interior_and_is_bounded():
    calls = []

    def loss(lr):  # convex in log lr, minimum at 8e-3
        calls.append(lr)
        return (math.log(lr) - math.log(8e-3)) ** 2

    res = run_sweep([1e-3, 2e-3], loss, max_extensions=2)
    assert res["extended"] == [4e-3, 8e-3] and res["chosen_lr"] == 8e-3 and res["at_edge"]  # budget used up
    calls.clear()
    res = run_sweep([1e-3, 2e-3], loss, max_extensions=5)
    assert res["extended"] == [4e-3, 8e-3, 0.016] and res["chosen_lr"] == 8e-3 and not res["at_edge"]
    assert calls == [1e-3, 2e-3, 4e-3, 8e-3, 0.016]
    assert run_sweep([4e-3, 8e-3, 1.6e-2], loss, max_extensions=2)["extended"] == []


def test_sft_lr_is_chosen_on_the_validation_slice_only(tmp_path, monkeypatch):
    """Planted losses: the validation slice prefers 1e-3, the test slice would prefer 4e-3. The cell must choose
    1e-3 and never read the test slice."""
    from hf_muon.lab.study import train

    planted_val = {5e-4: 1.2, 1e-3: 1.0, 2e-3: 1.5, 4e-3: 2.0}  # 1e-3: at the bottom edge, then interior
    planted_test = {5e-4: 3.0, 1e-3: 2.0, 2e-3: 1.5, 4e-3: 1.0}

    class NoTest(dict):
        def __getitem__(self, k):
            if k == "test":
                raise AssertionError("the lr selection read the test slice")
            return super().__getitem__(k)

    def fake_run(cfg, tok, data, seed, base_info, opt, variant, lr, steps, out):
        assert data["val"] == ["val rows"]
        return train.mark(
            out,
            {
                "val_loss": planted_val[lr],
                "test_loss": planted_test[lr],
                "lr": lr,
                "model_dir": str(out / "model"),
            },
        )

    monkeypatch.setattr(train, "sft_run", fake_run)
    cfg = load_config(TINY, {"sft": {"lrs": {"adamw": [1e-3, 2e-3, 4e-3], "muon": [1e-3]}, "max_extensions": 2}})
    data = NoTest(train=["train rows"], val=["val rows"], test=["test rows"])
    info = train.sft_cell(cfg, None, data, 0, {"optimizer": "adamw"}, "adamw", "", tmp_path / "cell", {}, print)
    assert info["chosen_lr"] == 1e-3 and info["extended"] == [5e-4] and not info["at_edge"]
    assert min(planted_test, key=planted_test.get) != info["chosen_lr"]
    assert json.loads((tmp_path / "cell" / "DONE.json").read_text())["sweep"] == {
        "0.0005": 1.2,
        "0.001": 1.0,
        "0.002": 1.5,
        "0.004": 2.0,
    }


# ------------------------------------------------------------------------------------------- statistics
def test_paired_statistics_against_a_hand_computed_case():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0, 7: 9.0}, {0: 0.5, 1: 1.0, 2: 1.5}  # seed 7 is unpaired: dropped
    c = paired_contrast(a, b)
    # d = [0.5, 1.0, 2.5]: mean 4/3, sd √(13/12), half-width t(0.975, 2) = 4.303 × sd/√3
    assert c["n"] == 3 and c["seeds"] == [0, 1, 2] and c["mean"] == pytest.approx(4 / 3)
    assert c["sd"] == pytest.approx(math.sqrt(13 / 12))
    half = 4.303 * math.sqrt(13 / 12) / math.sqrt(3)
    assert c["t_ci"] == pytest.approx((4 / 3 - half, 4 / 3 + half)) and not c["excludes_zero"]
    assert verdict(c, higher_is_better=True) == "not resolved"
    tight = paired_contrast({0: 2.0, 1: 2.1, 2: 1.9}, {0: 1.0, 1: 1.0, 2: 1.0})  # d = [1, 1.1, 0.9]
    assert tight["t_ci"] == pytest.approx((1 - 4.303 * 0.1 / math.sqrt(3), 1 + 4.303 * 0.1 / math.sqrt(3)))
    assert tight["excludes_zero"] and verdict(tight, True) == "a better" and verdict(tight, False) == "b better"
    boot = bootstrap_interval([1.0, 1.1, 0.9])
    assert boot == bootstrap_interval([1.0, 1.1, 0.9]) and 0.9 <= boot[0] < boot[1] <= 1.1  # fixed RNG seed
    assert t_interval([1.0]) is None
    one = paired_contrast({0: 1.0}, {0: 0.0})
    assert verdict(one, True) == "n=1, no interval" and "n=1, no interval" in format_ci(one)


def test_report_wording_follows_the_interval():
    def vals(mm, am):  # SFT test loss of Muon/Muon and AdamW/Muon over three seeds
        return {
            "muon / muon": {"SFT test loss": dict(enumerate(mm))},
            "adamw / muon": {"SFT test loss": dict(enumerate(am))},
        }

    row = contrasts(vals([5.0, 5.1, 4.9], [6.0, 6.0, 6.0]), {}, ["SFT test loss"])[0]  # Muon/Muon lower: claimed
    assert row["verdict"] == "reproduces"
    row = contrasts(vals([7.0, 7.1, 6.9], [6.0, 6.0, 6.0]), {}, ["SFT test loss"])[0]
    assert row["verdict"] == "opposite (CI excludes 0)"
    row = contrasts(vals([5.0, 7.0, 6.1], [6.0, 6.0, 6.0]), {}, ["SFT test loss"])[0]
    assert row["verdict"] == "not resolved (CI includes 0)"
    row = contrasts(vals([5.0], [6.0]), {}, ["SFT test loss"])[0]
    assert row["verdict"] == "n=1, no interval"
    assert (
        judge(paired_contrast({0: 30.0, 1: 31, 2: 32}, {0: 20.0, 1: 20, 2: 20}), "MMLU acc", "a", True)
        == "at chance: no signal"
    )
    # remedies: warm start better than AdamW/Muon and indistinguishable from AdamW/AdamW -> reaches it
    v = {
        "adamw / adamw": {"SFT test loss": {0: 5.0, 1: 5.2, 2: 4.9}},
        "adamw / muon": {"SFT test loss": {0: 6.0, 1: 6.1, 2: 6.0}},
        "adamw / muon (warm start)": {"SFT test loss": {0: 5.1, 1: 5.0, 2: 5.0}},
    }
    text = " ".join(remedy_statement(remedy_rows(v, ["SFT test loss"])))
    assert "adamw / muon (warm start): vs AdamW/Muon better" in text and "reaches the level of adamw / adamw" in text
    # the plain statement counts verdicts, names what reproduces and what is reversed, and flags chance columns
    rows = [
        contrasts(vals(mm, [6.0, 6.0, 6.0]), {}, ["SFT test loss"])[0]
        for mm in ([5.0, 5.1, 4.9], [7.0, 7.1, 6.9], [5.0, 7.0, 6.1])
    ]
    text = " ".join(plain_summary(rows, [0, 1, 2], ["MMLU acc"]))
    assert "With 3 paired seeds, 1 of 3 claimed orderings reproduce: Muon/Muon vs AdamW/Muon" in text
    assert (
        "1 go the other way with the interval excluding 0: Muon/Muon vs AdamW/Muon (SFT with Muon: which base) on "
        "SFT test loss (+1.000" in text
    )
    assert "The other 1 are not resolved" in text and "so silent on the question: MMLU acc." in text
    assert plain_summary(rows[:1], [0], []) == ["1 seed: no interval, so no ordering is claimed either way."]


def test_blimp_columns_forgetting_and_agreement_on_planted_numbers():
    from hf_muon.lab.study import tables as T

    def unit(seed, pair, kind, pretrain, blimp_acc, loss):
        return {
            "seed": seed,
            "pair": pair,
            "kind": kind,
            "pretrain": pretrain,
            "scores": {
                "blimp": {
                    "acc": blimp_acc,
                    "acc_by_field": {"syntax": blimp_acc},
                    "n_by_field": {"syntax": 26},
                    "n_scored": 67,
                },
                "perplexity": {"loss": loss},
                "sft_loss": {"loss": loss + 1},
            },
        }

    units = []
    for s in range(3):
        units += [
            unit(s, "adamw / -", "base", "adamw", 0.60, 5.0),
            unit(s, "muon / -", "base", "muon", 0.64, 4.7),
            unit(s, "adamw / adamw", "sft", "adamw", 0.55 + 0.01 * s, 5.5),
            unit(s, "adamw / muon", "sft", "adamw", 0.58 + 0.01 * s, 5.3),
            unit(s, "muon / adamw", "sft", "muon", 0.60, 5.0),
            unit(s, "muon / muon", "sft", "muon", 0.63, 4.8),
        ]
    values, counts = T.collect_values(units)
    assert values["adamw / muon"]["BLiMP forgetting (Δ acc)"] == pytest.approx({0: -2.0, 1: -1.0, 2: 0.0})
    assert values["muon / muon"]["BLiMP syntax"][0] == pytest.approx(63.0) and counts["BLiMP syntax"] == 26
    assert counts["BLiMP acc"] == 67 and "BLiMP forgetting (Δ acc)" not in values["adamw / -"]
    labels = ["SFT test loss", "BLiMP acc", T.FORGETTING, T.BLIMP_FORGETTING]
    rows = T.contrasts(values, counts, labels)
    blimp_row = next(
        r for r in rows if r["metric"] == T.BLIMP_FORGETTING and r["b"] == "adamw / adamw" and r["a"] == "adamw / muon"
    )
    assert blimp_row["mean"] == pytest.approx(3.0) and blimp_row["verdict"] == "opposite (CI excludes 0)"
    text = "\n".join(T.blimp_agreement(rows, [0, 1, 2]))
    assert (
        "| contrast | SFT test loss | forgetting (Δ pretrain val loss) | BLiMP acc | BLiMP forgetting (Δ acc) |" in text
    )
    assert "BLiMP reads the same as the loss columns on" in text
    assert T.blimp_agreement(rows, [0])[-1] == "1 seed: no interval, so no agreement is judged."


# ------------------------------------------------------------------------------------------- warm start
def test_warm_start_loads_the_adamw_moment_into_muons_buffer_and_resumes_exactly(tmp_path):
    import hf_muon
    from hf_muon.lab.models import build_llama
    from hf_muon.lab.study.warmstart import load_first_moments, save_optimizer_state, warm_start_momentum

    def model():
        return build_llama(32, 2, 64, 64, heads=4, kv_heads=4, intermediate_size=48, seed=0)

    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    base = model()
    adam = torch.optim.AdamW(base.parameters(), lr=1e-2)
    for _ in range(3):
        base(input_ids=x, labels=x).loss.backward()
        adam.step()
        adam.zero_grad()
    path = save_optimizer_state(adam, base, tmp_path / "optimizer_state.pt")
    assert torch.load(path, weights_only=True)["param_names"][0] == next(iter(dict(base.named_parameters())))
    moments = load_first_moments(path)

    def muon_for(m, warm=True):
        opt = hf_muon.create_optimizer(m, lr=1e-2)
        if warm:
            assert warm_start_momentum(opt, m, moments) == sum(
                len(g["params"]) for g in opt.param_groups if g["use_muon"]
            )
        return opt

    def steps(m, opt, n):
        for _ in range(n):
            m(input_ids=x, labels=x).loss.backward()
            opt.step()
            opt.zero_grad()

    m1 = model()
    m1.load_state_dict(base.state_dict())
    o1 = muon_for(m1)
    names = {id(p): n for n, p in m1.named_parameters()}
    for g in o1.param_groups:
        for p in g["params"] if g["use_muon"] else []:
            buf = o1.state[p]["momentum_buffer"]
            assert buf.shape == p.shape
            torch.testing.assert_close(buf, moments[names[id(p)]] / (1 - 0.95), rtol=0, atol=1e-7)
    cold = model()
    cold.load_state_dict(base.state_dict())
    steps(cold, muon_for(cold, warm=False), 1)
    steps(m1, o1, 1)
    assert not torch.equal(m1.model.layers[0].mlp.up_proj.weight, cold.model.layers[0].mlp.up_proj.weight)
    steps(m1, o1, 3)  # reference: warm start then 4 steps straight
    m2 = model()
    m2.load_state_dict(base.state_dict())
    o2 = muon_for(m2)
    steps(m2, o2, 1)
    # a resume: fresh optimizer warm-started again (as the Trainer's create_optimizer does), then the checkpoint
    m3, o3 = weights_only_resume(m2, o2, lambda m: muon_for(m))
    steps(m3, o3, 3)
    for (n, p1), p3 in zip(m1.named_parameters(), m3.parameters()):
        assert torch.equal(p1, p3), n
    bad = {k: v[:1] for k, v in moments.items()}
    m4 = model()
    with pytest.raises(ValueError, match="saved exp_avg"):
        warm_start_momentum(hf_muon.create_optimizer(m4, lr=1e-2), m4, bad)


# ------------------------------------------------------------------------------------------- SFT data
def test_both_sft_files_deduplicated_malformed_counted_and_split_by_hash(tmp_path):
    from hf_muon.lab.study.sftdata import load_sft_rows, split_rows

    mirror = tmp_path / "data"
    (mirror / "sft").mkdir(parents=True)
    a = (data_dir() / "sft" / "tulu3_sft_mixture_sample.jsonl").read_text().splitlines()
    b = (data_dir() / "sft" / "tulu3_preference_chosen_as_sft.jsonl").read_text().splitlines()
    bad = ["{not json", json.dumps({"id": "x", "messages": [{"role": "user", "content": "q only"}]})]
    (mirror / "sft" / "one.jsonl").write_text("\n".join(a[:30] + bad + a[:3]) + "\n")  # 3 repeats within the file
    (mirror / "sft" / "two.jsonl").write_text("\n".join(a[10:15] + b[:20] + bad[:1]) + "\n")  # 5 across files
    cfg = load_config(TINY, {"data_dir": str(mirror), "sft": {"mirror_file": ["sft/one.jsonl", "sft/two.jsonl"]}})
    rows, rep = load_sft_rows(cfg)
    one, two = rep["files"]
    assert (one["rows"], one["malformed"], one["duplicates"]) == (35, 2, 3)
    assert (two["rows"], two["malformed"], two["duplicates"]) == (26, 1, 5)
    assert rep["unique"] == len(rows) == 50 and rep["malformed"] == 3 and rep["duplicates"] == 8
    train, val, test = split_rows(rows, 6, 7)
    assert (len(train), len(val), len(test)) == (37, 6, 7)
    cfg2 = load_config(TINY, {"data_dir": str(mirror), "sft": {"mirror_file": ["sft/two.jsonl", "sft/one.jsonl"]}})
    _, val2, test2 = split_rows(load_sft_rows(cfg2)[0], 6, 7)  # the slices do not depend on the file order
    assert [r["key"] for r in val2] == [r["key"] for r in val] and [r["key"] for r in test2] == [r["key"] for r in test]
    keys = {r["key"] for r in train}
    assert not keys & {r["key"] for r in val + test}
    with pytest.raises(ValueError, match="leave no training rows"):
        split_rows(rows, 25, 25)


def test_config_grids_and_remedies(tmp_path):
    cfg = load_config(TINY, {"sft": {"lrs": {"adamw": 1e-3, "muon": [3e-3, 1e-3]}}})
    assert cfg.sft.lrs == {"adamw": [1e-3], "muon": [1e-3, 3e-3]}
    with pytest.raises(ValueError, match="sft.remedies: 'magic' is not valid; valid: lora, p_half"):
        load_config(TINY, {"sft": {"remedies": ["magic"]}})
    with pytest.raises(ValueError, match=r"sft.lrs.muon: give a positive learning rate"):
        load_config(TINY, {"sft": {"lrs": {"adamw": [1e-3], "muon": [-1.0]}}})
    with pytest.raises(ValueError, match="pretrain.corpus: 'books3'"):
        load_config(TINY, {"pretrain": {"corpus": "tinystories+books3"}})
    for name in ("smoke.yaml", "small.yaml"):
        c = load_config(REPO / "recipes" / "mismatch" / name)
        assert all(len(g) >= 3 for g in c.sft.lrs.values()), name
        assert set(c.sft.remedies) == {"lora", "p_half", "warm_start", "lr_half", "lr_quarter"}, name


def test_truncated_bpe_keeps_gpt2_ids():
    from hf_muon.lab.data import load_tokenizer

    full, small = load_tokenizer(data_dir()), load_tokenizer(data_dir(), vocab_size=1024)
    assert len(small) == 1024 and small.eos_token_id == 1023 and small.pad_token_id == 1023
    text = "Once upon a time there was a cat."
    ids = small(text)["input_ids"]
    assert max(ids) < 1023 and small.decode(ids) == text
    assert small.convert_ids_to_tokens(list(range(1023))) == full.convert_ids_to_tokens(list(range(1023)))
