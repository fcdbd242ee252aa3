"""Each update-rule variant through the Trainer's --optim muon --optim_args on a tiny Llama: the loss falls and the
weights differ from plain Muon's; QK-Clip's clipped-head counts reach the logs through MuonDiagnosticsCallback."""

import pytest
import torch
from conftest import tiny_llama

import hf_muon

STEPS = 16


def _data(n=64, seq=16, vocab=128):
    g = torch.Generator().manual_seed(0)
    ids = (torch.randint(0, vocab, (n, 1), generator=g) + torch.arange(seq)) % vocab  # counting sequences
    return [{"input_ids": x, "labels": x} for x in ids]


def _train(tmp_path, optim_args, callbacks=()):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    args = TrainingArguments(
        str(tmp_path),
        optim="muon",
        optim_args=optim_args,
        learning_rate=1e-2,
        weight_decay=0.1,
        max_steps=STEPS,
        per_device_train_batch_size=4,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=tiny_llama(), args=args, train_dataset=_data(), callbacks=list(callbacks))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return trainer, losses


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    trainer, _ = _train(tmp_path_factory.mktemp("plain"), "")
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize(
    "optim_args", ["variant=normuon", "variant=adamuon", "cautious_wd=true", "per_head=true", "qk_clip=0.1"]
)
def test_variant_trains_through_optim_args_and_differs_from_muon(optim_args, plain, tmp_path):
    trainer, losses = _train(tmp_path, optim_args)
    opt = trainer.optimizer.optimizer
    assert isinstance(opt, hf_muon.Muon)
    key, value = optim_args.split("=")
    muon = [g for g in opt.param_groups if g["use_muon"]]
    if key in ("variant", "cautious_wd"):
        assert {str(g[key]).lower() for g in muon} == {value}
    elif key == "per_head":
        assert any(g["split"] and g["split"]["label"] == "heads" for g in muon)
    else:
        assert opt.qk_clip is not None and opt.qk_clip.tau == 0.1
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:2]) / 2
    differs = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, plain[n])]
    assert any("q_proj" in n for n in differs)


def test_qk_clip_counts_reach_the_trainer_logs(tmp_path):
    import json

    from transformers import TrainerCallback

    seen = []

    class Reporter(TrainerCallback):  # stands in for TensorBoard/W&B
        def on_log(self, args, state, control, logs=None, **kw):
            seen.append(dict(logs))

    cb = hf_muon.MuonDiagnosticsCallback(every=1000, jsonl=str(tmp_path / "diag.jsonl"))
    _train(tmp_path, "qk_clip=0.1", callbacks=[Reporter(), cb])
    logged = [h for h in seen if "loss" in h]
    assert len(logged) == STEPS and all(h["muon/qk_clip_heads"] == 8 for h in logged)
    rows = [json.loads(line) for line in open(tmp_path / "diag.jsonl")]
    steps = [r for r in rows if r["kind"] == "step"]
    assert len(steps) == STEPS and sum(r["qk_clip_heads_clipped"] for r in steps) > 0
    assert max(r["qk_clip_max_logit"] for r in steps) > 0.1
