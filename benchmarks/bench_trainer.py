"""HF Trainer end to end: tokens/s with ``--optim muon`` vs ``--optim adamw_torch`` (and ``adamw_torch_fused``), and the cost of
``MuonDiagnosticsCallback`` at its default interval.

Same model (a Llama with hidden 256, 4 layers, intermediate 688, GPT-2 vocabulary), same real text
(TinyStories from the local mirror, GPT-2 tokens), same batch, fp32 on CPU. Time per training step is
the median over steps after a warmup, measured by a callback (``on_step_begin`` → ``on_step_end``,
which includes forward, backward, clipping and the optimizer step).

Diagnostics cost = per-step overhead (median step with the callback − without) + the spectral
snapshot's time amortised over its interval (``every`` = 100 by default). Target: ≤ 5% of step time.

    python benchmarks/bench_trainer.py [--tiny] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def _data(tiny: bool, block: int):
    from hf_muon.lab.data import lm_blocks, load_text, load_tokenizer

    data = os.environ.get("HF_MUON_DATA") or str(common.REPO_DIR.parent / "shared" / "data")
    tok = load_tokenizer(data)
    ds = lm_blocks(tok, load_text(data, "tinystories"), block_size=block, max_tokens=20_000 if tiny else 200_000)
    return ds, len(tok)


def _model(vocab: int, tiny: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    h, layers, inter = (32, 2, 86) if tiny else (256, 4, 688)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=inter,
                                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                                        tie_word_embeddings=False))


def _run(optim: str, diagnostics: bool, ds, vocab, args, out_dir: Path):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    import hf_muon

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    callbacks = [StepTimer()]
    diag = None
    if diagnostics:
        diag = hf_muon.MuonDiagnosticsCallback(every=args.every, jsonl=None)
        callbacks.append(diag)
    targs = TrainingArguments(output_dir=str(out_dir), use_cpu=True, report_to=[], optim=optim,
                              learning_rate=1e-3, max_steps=args.steps, per_device_train_batch_size=args.batch,
                              save_strategy="no", logging_steps=10_000, disable_tqdm=True, seed=0,
                              dataloader_num_workers=0)
    trainer = Trainer(model=_model(vocab, args.tiny), args=targs, train_dataset=ds, callbacks=callbacks)
    trainer.train()
    steady = times[args.warmup:]
    result = {"step_ms_median": 1e3 * statistics.median(steady), "steps_timed": len(steady),
              "tokens_per_s": args.batch * args.block / statistics.median(steady)}
    if diag is not None:
        t = time.perf_counter()
        diag.spectral_snapshot(args.steps)
        result["snapshot_ms"] = 1e3 * (time.perf_counter() - t)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--every", type=int, default=100, help="diagnostics snapshot interval (callback default)")
    ap.add_argument("--allow-busy", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.tiny:
        args.steps, args.warmup, args.batch, args.block = 6, 2, 2, 32
    load = common.check_load(args.allow_busy)
    common.seed_everything(0)
    ds, vocab = _data(args.tiny, args.block)
    import tempfile

    res = {}
    with tempfile.TemporaryDirectory() as d:
        for name, optim, diag in (("adamw_torch", "adamw_torch", False), ("adamw_torch_fused", "adamw_torch_fused", False),
                                  ("muon", "muon", False),
                                  ("muon + diagnostics", "muon", True)):
            res[name] = _run(optim, diag, ds, vocab, args, Path(d) / name.replace(" ", "_"))
            print(f"{name}: {res[name]['step_ms_median']:.1f} ms/step, {res[name]['tokens_per_s']:.0f} tokens/s",
                  flush=True)
    base, muon, diag = res["adamw_torch"], res["muon"], res["muon + diagnostics"]
    per_step = diag["step_ms_median"] - muon["step_ms_median"]
    amortised = diag["snapshot_ms"] / args.every
    overhead = (per_step + amortised) / muon["step_ms_median"]
    targets = [{"target": "diagnostics at the default interval cost ≤ 5% of step time",
                "measured": f"{overhead:.1%} (per step {per_step:+.1f} ms, snapshot {diag['snapshot_ms']:.0f} ms "
                            f"/ {args.every} steps)", "met": overhead <= 0.05}]
    rows = [[k, f"{v['step_ms_median']:.1f}", f"{v['tokens_per_s']:.0f}",
             f"{v['tokens_per_s'] / base['tokens_per_s']:.3f}"] for k, v in res.items()]
    md = common.markdown_table(["run", "step ms (median)", "tokens/s", "× adamw_torch tokens/s"], rows, "lrrr")
    print("\n" + md)
    for t in targets:
        print(f"TARGET {t['target']}: {t['measured']} -> {'MET' if t['met'] else 'NOT MET'}")
    out = {"machine": common.machine_info(args.device), "versions": common.package_versions(), "load": load,
           "seeds": {"torch": 0, "trainer": 0}, "config": vars(args), "results": res, "targets": targets}
    if not args.tiny:
        common.write_json(common.RESULTS_DIR / "trainer.json", out)
        common.update_markdown_section(common.RESULTS_MD, "trainer", "\n".join([
            "## HF Trainer end to end (CPU, fp32)",
            "",
            f"`python benchmarks/bench_trainer.py` — Llama h256/4L/688 with the GPT-2 vocabulary, batch "
            f"{args.batch}×{args.block} tokens of TinyStories, median of steps {args.warmup + 1}-{args.steps}.",
            "",
            md,
            "",
            *[f"- {t['target']}: {t['measured']} — {'MET' if t['met'] else 'NOT MET'}" for t in targets],
        ]))
    return out


if __name__ == "__main__":
    main()
