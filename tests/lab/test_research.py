"""hf_muon.lab.research and the research recipes (recipes/spectral_laws, spectral_family, lr_transfer).

Fast tests check the pieces on synthetic inputs with hand-computed answers (FLOP counts, power-law
fits, lr grids, resume); the slow tests run each recipe's tiny config end to end on the mirror text and
then re-run it to check that finished runs are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from conftest import REPO, data_dir, tiny_llama

from hf_muon.lab import research as R

RECIPES = ("spectral_laws", "spectral_family", "lr_transfer")


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / name / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------- FLOP counting
def test_ns_flops_hand_computed_shapes():
    # (64, 256): m=64, n=256: 4·64²·256 + 2·64³ = 4,194,304 + 524,288 = 4,718,592 per step.
    assert R.ns_flops((64, 256), 1) == 4_718_592
    assert R.ns_flops((64, 256), 5) == 23_592_960
    assert R.ns_flops((256, 64), 5) == 23_592_960  # tall matrices run in wide orientation
    assert R.ns_flops((32, 32), 10) == 10 * (4 * 32**3 + 2 * 32**3)
    # a batch of 3 (8, 16) matrices, 2 steps: 3·2·(4·64·16 + 2·512) = 30,720
    assert R.ns_flops((3, 8, 16), 2) == 30_720
    assert R.ns_flops((64, 256), 0) == 0


def test_optimizer_ns_flops_follows_the_schedule():
    """tiny_llama: hidden 32, MLP 64, 2 layers, 4 heads of 8, 2 KV heads → per layer q, o (32, 32),
    k, v (16, 32), gate, up (64, 32), down (32, 64)."""
    q = 4 * 32 * 32 * 32 + 2 * 32**3  # 196,608
    kv = 4 * 16 * 16 * 32 + 2 * 16**3  # 40,960
    mlp = 4 * 32 * 32 * 64 + 2 * 32**3  # 327,680
    per_layer = 2 * q + 2 * kv + 3 * mlp
    assert per_layer == 1_458_176
    opt = R.build_optimizer(tiny_llama(), {"lr": 0.02, "ns_steps": 5})
    assert R.optimizer_ns_flops(opt) == 2 * per_layer * 5 == 14_581_760
    opt = R.build_optimizer(tiny_llama(), {"lr": 0.02, "ns_steps": "last1:10"})
    assert R.optimizer_ns_flops(opt) == per_layer * 5 + per_layer * 10


def test_auto_flops_use_the_steps_in_use():
    model = tiny_llama()
    opt = R.build_optimizer(model, {"lr": 0.02, "ns_steps": "auto", "coefficients": "keller"})
    ids = torch.randint(0, 128, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    steps = {n: R.current_ns_steps(opt, p, g) for n, p, g in R.muon_params(opt)}
    assert all(1 <= s <= 15 for s in steps.values())
    expected = sum(R.ns_flops(p.shape, steps[n]) for n, p, _ in R.muon_params(opt))
    assert R.optimizer_ns_flops(opt) == expected


# ------------------------------------------------------------------------------------------- statistics
def test_power_law_fit_recovers_known_exponent():
    x = torch.logspace(5, 8, 8, dtype=torch.float64)
    exact = R.fit_power_law(x.tolist(), (3.0 * x**-0.37).tolist())
    assert exact["alpha"] == pytest.approx(-0.37, abs=1e-10)
    assert math.exp(exact["c"]) == pytest.approx(3.0, rel=1e-8)
    assert exact["r2"] == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    noisy = 0.05 * x**-0.96 * torch.exp(0.03 * torch.randn(8, generator=g, dtype=torch.float64))
    fit = R.fit_power_law(x.tolist(), noisy.tolist())
    assert fit["alpha"] == pytest.approx(-0.96, abs=0.03)
    assert fit["r2"] > 0.99 and fit["stderr"] < 0.03
    with pytest.raises(ValueError):
        R.fit_power_law([1.0], [1.0])


def test_lr_grid_and_best_lr():
    assert R.lr_grid(0.01, 2.0, 3) == [0.005, 0.01, 0.02]
    grid = R.lr_grid(0.01, 2.0, 6)
    assert len(grid) == 6 and math.sqrt(grid[0] * grid[-1]) == pytest.approx(0.01, rel=1e-3)
    lrs = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    losses = [(math.log(lr) - math.log(5e-3)) ** 2 + 3.0 for lr in lrs]  # parabola in log-lr, min at 5e-3
    b = R.best_lr(lrs, losses)
    assert b["best_lr"] == 3e-3 and b["interior"]
    assert b["refined_lr"] == pytest.approx(5e-3, rel=1e-9)
    edge = R.best_lr(lrs, [5, 4, 3, 2, 1])
    assert edge["best_lr"] == 1e-1 and not edge["interior"] and edge["refined_lr"] == 1e-1
    div = R.best_lr(lrs, [3.1, 3.0, None, None, None])  # None = diverged
    assert div["best_lr"] == 3e-3 and div["interior"]
    assert R.best_lr(lrs, [None] * 5)["diverged_all"]


def test_lr_schedule_warmup_stable_decay():
    f = [R.lr_factor(s, 10, 2, 0.2, 0.0) for s in range(10)]
    assert f[:2] == [0.5, 1.0] and f[2:8] == [1.0] * 6
    assert f[8] == pytest.approx(0.5) and f[9] == pytest.approx(0.0)


def test_compact_vocab_keeps_most_frequent_ids():
    ids = torch.tensor([[5, 5, 5, 7, 7, 9, 1]])
    remap = R.compact_vocab(ids, 3, 10)
    assert remap[5] == 0 and remap[7] == 1
    assert remap[9] == 2 and remap[1] == 2 and remap[0] == 2  # "other"


def test_merge_config_names_unknown_keys():
    d = {"train": {"steps": 1, "lr": 0.1}, "variants": {}, "widths": [1]}
    out = R.merge_config(d, {"train": {"steps": 5}, "variants": {"A": {"p": 0}}, "widths": [2, 3]})
    assert out["train"] == {"steps": 5, "lr": 0.1} and out["variants"] == {"A": {"p": 0}} and out["widths"] == [2, 3]
    assert d["train"]["steps"] == 1  # defaults untouched
    with pytest.raises(ValueError, match=r"train\.stpes"):
        R.merge_config(d, {"train": {"stpes": 5}})


# ------------------------------------------------------------------------------------------- training
def _synthetic_data(vocab=64, n=24, T=16):
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, vocab, (n, T), generator=g)
    return R.LMData(base[:20], base[20:], vocab)


def test_train_loop_records_and_detects_divergence(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    data = _synthetic_data()
    seen = []
    model = R.build_llama(32, 2, data.vocab_size, 16, head_dim=8)
    opt = R.build_optimizer(model, {"lr": 0.02})
    cfg = {"steps": 12, "batch_size": 4, "warmup_steps": 2, "eval_every": 5}
    res = R.train(model, opt, data, cfg, on_step=lambda s, *a: seen.append(s))
    assert seen == list(range(1, 13)) and not res["diverged"]
    assert res["steps_done"] == 12 and res["tokens"] == 12 * 4 * 16
    assert [s for s, _ in res["val_curve"]] == [5, 10, 12] and res["val_curve"][-1][1] == res["final_val_loss"]
    assert res["final_val_loss"] == pytest.approx(R.evaluate(model, data.val))
    model = R.build_llama(32, 2, data.vocab_size, 16, head_dim=8)
    res = R.train(model, R.build_optimizer(model, {"lr": 0.02}), data, cfg, diverge_loss=0.0)
    assert res["diverged"] and res["final_val_loss"] is None and res["steps_done"] == 0


def test_param_counts_separate_embeddings():
    model = R.build_llama(32, 2, 100, 16, head_dim=8, tie_word_embeddings=True)
    c = R.param_counts(model)
    assert c["embedding"] == 100 * 32 and c["total"] == sum(p.numel() for p in model.parameters())
    gpt = R.build_gpt2(32, 2, 2, 100, 16)
    c = R.param_counts(gpt)
    assert c["embedding"] == 100 * 32 + 16 * 32  # token + position tables (head tied)


# --------------------------------------------------------------------------------------------- resume
def test_run_store_skips_finished_runs_and_reruns_changed_specs(tmp_path):
    store = R.RunStore(tmp_path)
    calls = []

    def fn(v):
        calls.append(v)
        return {"final_val_loss": v, "curve": (1, 2)}

    assert store.run("a", {"lr": 0.1}, lambda: fn(1.0)) == {"final_val_loss": 1.0, "curve": [1, 2]}
    assert store.run("a", {"lr": 0.1}, lambda: fn(2.0))["final_val_loss"] == 1.0  # skipped
    assert calls == [1.0] and store.skipped == ["a"]
    assert store.run("a", {"lr": 0.2}, lambda: fn(3.0))["final_val_loss"] == 3.0  # spec changed: re-run
    assert calls == [1.0, 3.0]
    (tmp_path / "runs" / "b.json").write_text('{"status": "running"')  # interrupted mid-write
    assert store.run("b", {}, lambda: fn(4.0))["final_val_loss"] == 4.0
    rec = json.loads((tmp_path / "runs" / "b.json").read_text())
    assert rec["status"] == "done" and rec["spec"] == {} and "wall_s" in rec


# ---------------------------------------------------------------------------------------- recipe parts
def test_recipe_configs_load():
    for name in RECIPES:
        mod = load_recipe(name)
        for cfg_name in ("config.yaml", "tiny.yaml"):
            cfg = R.load_config(REPO / "recipes" / name / cfg_name, mod.DEFAULTS)
            assert cfg["threads"] == 1


def test_spectral_laws_helpers():
    mod = load_recipe("spectral_laws")
    M = torch.randn(48, 80)
    assert torch.allclose(mod.gram_singular_values(M), torch.linalg.svdvals(M.double()), atol=1e-10)
    assert torch.allclose(mod.gram_singular_values(M.T), torch.linalg.svdvals(M.double()), atol=1e-10)
    assert [mod.depth_index(f, 4) for f in (0.25, 0.5, 0.75, 1.0)] == [0, 1, 2, 3]
    assert [mod.depth_index(f, 8) for f in (0.25, 0.5, 0.75, 1.0)] == [1, 3, 5, 7]
    cfg = R.load_config(REPO / "recipes" / "spectral_laws" / "config.yaml", mod.DEFAULTS)
    ids = [r["run_id"] for r in mod.plan(cfg)]
    assert len([i for i in ids if i.startswith("ladder_")]) >= 5
    # uniform5 is the ladder run at the benchmark width; the other three schedules get their own runs
    assert [i for i in ids if i.startswith("ns_")] == [
        "ns_uniform10_w256",
        "ns_depth_last1_10_w256",
        "ns_auto_w256",
        "ns_auto_q01_w256",
        "ns_auto_q01_t95_w256",
    ]
    # an auto variant carries its own rule settings into the run (and its spec); plain "auto" uses the section's
    runs = {r["run_id"]: r for r in mod.plan(cfg)}
    assert runs["ns_auto_q01_t95_w256"]["auto"] == {
        "auto_quantile": 0.01,
        "auto_target": 0.95,
        "auto_min": 1,
        "auto_max": 15,
    }
    assert "auto" not in runs["ns_auto_w256"]
    assert mod.run_spec(cfg, runs["ns_auto_q01_t95_w256"])["auto"]["auto_target"] == 0.95
    with pytest.raises(ValueError, match="unknown auto setting.*auto_quantil"):
        mod.split_schedule({"auto": {"auto_quantil": 0.1}}, cfg["ns_benchmark"])
    # the rule picks more steps for a matrix whose spectrum has a small tail: σ = 1 on 30 directions, 1e-4 on 2;
    # normalised by ‖M‖_F = √30: the median 0.18 needs 5 Polar Express steps, the tail 1.8e-5 needs 11 (lift
    # thresholds 2.4e-5 at 10 steps, 1.3e-5 at 11)
    M = torch.diag(torch.tensor([1.0] * 30 + [1e-4] * 2))
    bench = cfg["ns_benchmark"]
    assert mod.schedule_steps("auto", "model.layers.0.mlp.up_proj.weight", M, 4, bench, "polar_express") == 5
    assert mod.schedule_steps({"auto": {"auto_quantile": 0.01}}, "x", M, 4, bench, "polar_express") == 11


def test_spectral_family_relations():
    mod = load_recipe("spectral_family")
    assert mod.relation(2.0, 2.01, "≈", 0.02, 0.1)["holds"]
    assert mod.relation(2.0, 2.05, "<", 0.02, 0.1)["verdict"] == "holds"
    assert mod.relation(2.0, 2.01, "<", 0.02, 0.1)["verdict"].startswith("within noise")
    assert mod.relation(2.0, 1.9, "<", 0.02, 0.1)["verdict"] == "reversed"
    assert mod.relation(2.0, 2.5, "≪", 0.02, 0.1)["holds"]
    assert not mod.relation(2.0, 2.05, "≪", 0.02, 0.1)["holds"]
    assert mod.transform_flops((128, 512), 0.0, 5) == R.ns_flops((128, 512), 5)
    assert mod.transform_flops((128, 512), 1.0, 5) == 0
    assert mod.transform_flops((128, 512), 0.25, 5) == 2 * mod.transform_flops((128, 512), 0.5, 5)


def test_lr_transfer_grids_and_verdicts():
    mod = load_recipe("lr_transfer")
    cfg = R.load_config(REPO / "recipes" / "lr_transfer" / "config.yaml", mod.DEFAULTS)
    gr = mod.grids(cfg)
    ref = mod.reference_width(cfg)
    assert ref == 181 and set(gr) == {"moonlight", "keller", "mup", "none"}
    for mode, lrs in gr.items():  # each grid is centred (geometrically) on the converted base lr
        center = math.sqrt(lrs[0] * lrs[-1])
        expected = cfg["sweep"]["base_lr"] * (0.2 * math.sqrt(ref) if mode != "moonlight" else 1.0)
        assert center == pytest.approx(expected, rel=2e-3)

    def b(lr, interior=True, grid_max=1.0):
        return {"best_lr": lr, "refined_lr": lr, "interior": interior, "grid_max": grid_max}

    assert mod.stability_verdict([b(0.01), b(0.015)], 2.0)[0] == "stable"
    assert mod.stability_verdict([b(0.01), b(0.04)], 2.0)[0] == "not stable"
    # top-edge optimum at 0.05 only says lr* >= 0.05: with 0.01 elsewhere the ratio is >= 5
    assert mod.stability_verdict([b(0.01), b(0.05, False, 0.05)], 2.0)[0] == "not stable"
    assert mod.stability_verdict([b(0.04), b(0.05, False, 0.05)], 2.0)[0].startswith("undetermined")


# -------------------------------------------------------------------------------------- end to end (slow)
@pytest.fixture
def recipe_env(monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("HF_MUON_DATA", str(data_dir()))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    threads, verbosity = torch.get_num_threads(), hf_logging.get_verbosity()
    yield
    torch.set_num_threads(threads)  # the recipes pin one thread and silence transformers' logs
    hf_logging.set_verbosity(verbosity)


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_tiny_recipe_end_to_end_and_resume(name, tmp_path, recipe_env, capsys):
    """The tiny config runs end to end (JSON per run, summary, plots, report with the command); a second
    invocation skips every finished run and rewrites the same report."""
    mod = load_recipe(name)
    out = tmp_path / name
    cfg_path = REPO / "recipes" / name / "tiny.yaml"
    mod.main([str(cfg_path), "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert runs and len(summary["executed"]) == len(runs) and summary["skipped"] == []
    for p in (out / "runs").glob("*.json"):
        rec = json.loads(p.read_text())
        assert rec["status"] == "done" and "final_val_loss" in rec["result"]
    report = (out / "report.md").read_text()
    assert f"python recipes/{name}/run.py recipes/{name}/tiny.yaml --out {out}" in report
    assert "Estimated cost" in report
    pngs = [p.name for p in out.glob("*.png")]
    assert pngs and all(f"]({p})" in report for p in pngs)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    capsys.readouterr()
    mod.main([str(cfg_path), "--out", str(out)])
    again = json.loads((out / "summary.json").read_text())
    assert again["executed"] == [] and sorted(again["skipped"]) == sorted(summary["executed"])
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == mtimes
    assert f"ran 0 run(s), skipped {len(runs)} finished" in capsys.readouterr().out
    if name == "spectral_laws":
        assert "Target 'auto matches uniform-10 quality" in report
        assert set(summary["ns_benchmark"]["variants"]) == {"auto_q01"} and "Auto variant `auto_q01`" in report
        assert ("MET" in report) and summary["ns_benchmark"]["target"]["flops_ratio"] > 0
        assert len(summary["fits"]) == 7 * 4
    if name == "spectral_family":
        assert "AdamS ≈ Adam ≈ AdamQ < AdamZ:" in report and "Muon ≈ mSGDQ ≪ mSGD:" in report
    if name == "lr_transfer":
        assert set(summary["analysis"]["modes"]) == {"moonlight", "keller", "mup", "none"}
