"""Diagnostics: spectral measures on known spectra, the callback through Trainer logs and JSONL, plots."""

import json
import math

import pytest
import torch
from conftest import tiny_llama

import hf_muon
from hf_muon.diagnostics import layer_info, normalized_quantiles, orthogonality_error, svd_entropy
from hf_muon.diagnostics.spectral import lifted_fraction


def test_svd_entropy_of_known_spectra():
    assert svd_entropy(torch.ones(8)) == pytest.approx(1.0)
    assert svd_entropy(torch.tensor([1.0, 0, 0, 0])) == pytest.approx(0.0, abs=1e-12)
    p = torch.tensor([0.5, 0.5, 0.0, 0.0])  # two equal directions out of four
    assert svd_entropy(p.sqrt()) == pytest.approx(math.log(2) / math.log(4))


def test_normalized_quantiles_and_orthogonality_error():
    sv = torch.tensor([3.0, 4.0])  # Frobenius 5 -> normalised 0.6, 0.8
    q = normalized_quantiles(sv, (0.0, 1.0))
    assert q == pytest.approx([0.6, 0.8])
    Q, _ = torch.linalg.qr(torch.randn(20, 8, dtype=torch.float64))
    assert orthogonality_error(Q.T) < 1e-10
    assert orthogonality_error(2 * Q.T) == pytest.approx(3.0)
    assert orthogonality_error(torch.zeros(4, 6)) == pytest.approx(1.0)
    half = torch.diag(torch.tensor([1.0, 1.0, 0.1, 0.0]))
    assert lifted_fraction(half) == pytest.approx(0.5)


def test_layer_info():
    assert layer_info("model.layers.3.self_attn.q_proj.weight") == (3, "q_proj")
    assert layer_info("transformer.h.0.mlp.c_fc.weight") == (0, "c_fc")
    assert layer_info("lm_head.weight") == (None, "lm_head")


def test_callback_logs_through_report_to_and_jsonl_and_plots(tmp_path):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    seen = []

    class Reporter(TrainerCallback):  # stands in for TensorBoard/W&B: registered before ours
        def on_log(self, args, state, control, logs=None, **kw):
            seen.append(dict(logs))

    g = torch.Generator().manual_seed(0)
    ids = (torch.randint(0, 128, (32, 1), generator=g) + torch.arange(16)) % 128
    data = [{"input_ids": x, "labels": x} for x in ids]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        optim="muon",
        max_steps=6,
        logging_steps=2,
        learning_rate=1e-2,
        per_device_train_batch_size=4,
        save_strategy="no",
        disable_tqdm=True,
    )
    cb = hf_muon.MuonDiagnosticsCallback(every=3)
    trainer = Trainer(model=tiny_llama(), args=args, train_dataset=data, callbacks=[Reporter(), cb])
    trainer.train()
    logged = [s for s in seen if "loss" in s]
    assert logged and all("muon/update_rms_muon" in s and "muon/ns_share" in s for s in logged)
    assert 0 < logged[-1]["muon/ns_share"] < 1
    # moonlight scaling: Muon update RMS ≈ 0.2·lr·RMS(O)/RMS(full-rank O) ~ 0.2·lr (NS outputs σ ≈ 1)
    assert 0.1 * 1e-2 < logged[0]["muon/update_rms_muon"] < 0.3 * 1e-2
    assert any("muon/svd_entropy_mean" in s for s in seen)
    rows = [json.loads(x) for x in (tmp_path / "muon_diagnostics.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in rows) == 6
    layer_rows = [r for r in rows if r["kind"] == "layer"]
    assert {r["step"] for r in layer_rows} == {1, 3, 6}
    assert len({r["name"] for r in layer_rows}) == 14
    with_q = [r for r in layer_rows if "momentum_sigma_quantiles" in r]
    assert with_q and all(0 < v <= 1 for r in with_q for v in r["momentum_sigma_quantiles"].values())
    spectral = [r for r in rows if r["kind"] == "spectral"]
    orth = [r for r in rows if r["kind"] == "orthogonality"]
    assert orth and all(0 <= r["error"] <= 1.0 and 0 <= r["lifted_fraction"] <= 1 for r in orth)
    assert all("orthogonality_error_max" in r for r in spectral)
    from hf_muon.diagnostics.plot import main as plot_main

    plot_main([str(tmp_path)])
    for name in ("update_rms.png", "entropy.png", "spectra_steps.png", "spectra_depth.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_callback_refuses_a_non_muon_optimizer(tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=1, save_strategy="no")
    data = [{"input_ids": torch.arange(8), "labels": torch.arange(8)}] * 4
    trainer = Trainer(model=tiny_llama(), args=args, train_dataset=data, callbacks=[hf_muon.MuonDiagnosticsCallback()])
    with pytest.raises(ValueError, match="needs the Trainer to use hf_muon.Muon"):
        trainer.train()
