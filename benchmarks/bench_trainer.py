"""HF Trainer end to end: tokens/s with ``--optim muon`` vs ``--optim adamw_torch`` (and ``adamw_torch_fused``),
and the cost of ``MuonDiagnosticsCallback`` at its default interval.

Same model (:func:`benchmarks.models.trainer_llama`: hidden 256, 4 layers, intermediate 688, GPT-2
vocabulary), same real text (TinyStories from the local mirror, GPT-2 tokens), same batch, fp32 on CPU. Time
per training step is the median over steps after a warmup, measured by a callback (``on_step_begin`` →
``on_step_end``: forward, backward, clipping and the optimizer step). The runs go one after another (a
Trainer cannot be interleaved step by step); other processes' CPU use is recorded per run and flagged.

Diagnostics cost = per-step overhead (median step with the callback − without) + the spectral snapshot's
time amortised over its interval (``every`` = 100 by default). Target: ≤ 5% of step time.

    python benchmarks/bench_trainer.py [--tiny] [--steps 30]
    python benchmarks/bench_trainer.py --from-json benchmarks/results/trainer.json   # report only
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import cli
from benchmarks.machine import OtherProcesses, contended
from benchmarks.models import MODEL_SEED, trainer_llama
from benchmarks.reports import trainer as REPORT

# run name: (TrainingArguments.optim, with MuonDiagnosticsCallback)
RUNS = {
    "adamw_torch": ("adamw_torch", False),
    "adamw_torch_fused": ("adamw_torch_fused", False),
    "muon": ("muon", False),
    "muon + diagnostics": ("muon", True),
}


def _data(data_dir, tiny: bool, block: int):
    from hf_muon.lab.data import lm_blocks, load_text, load_tokenizer, resolve_data_dir

    data = resolve_data_dir(data_dir, required=True)
    tok = load_tokenizer(data)
    ds = lm_blocks(tok, load_text(data, "tinystories"), block_size=block, max_tokens=20_000 if tiny else 200_000)
    return ds, len(tok)


def _run(optim: str, diagnostics: bool, ds, vocab: int, args, out_dir: Path) -> dict:
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
    targs = TrainingArguments(
        output_dir=str(out_dir),
        use_cpu=True,
        report_to=[],
        optim=optim,
        learning_rate=1e-3,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        save_strategy="no",
        logging_steps=10_000,
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=trainer_llama(vocab, args.tiny), args=targs, train_dataset=ds, callbacks=callbacks)
    with OtherProcesses() as others:
        trainer.train()
    steady = times[args.warmup :]
    result = {
        "step_ms_median": 1e3 * statistics.median(steady),
        "steps_timed": len(steady),
        "tokens_per_s": args.batch * args.block / statistics.median(steady),
        "other_cores": others.cores,
    }
    if diag is not None:
        t = time.perf_counter()
        diag.spectral_snapshot(args.steps)
        result["snapshot_ms"] = 1e3 * (time.perf_counter() - t)
    return result


def parse_args(argv: list[str] | None = None):
    ap = cli.standard_parser(__doc__, REPORT.NAME, tiny_help="hidden-32 model, 6 steps of 2×32 tokens (smoke test)")
    ap.add_argument("--data", default=None, help="data mirror (default $HF_MUON_DATA, else ../shared/data)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--every", type=int, default=100, help="diagnostics snapshot interval (callback default)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.steps, args.warmup, args.batch, args.block = 6, 2, 2, 32
    return args


def measure(args, load: dict, device) -> None:
    started = time.time()
    ds, vocab = _data(args.data, args.tiny, args.block)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for name, (optim, diag) in RUNS.items():
            res[name] = _run(optim, diag, ds, vocab, args, Path(d) / name.replace(" ", "_"))
            print(
                f"{name}: {res[name]['step_ms_median']:.1f} ms/step, {res[name]['tokens_per_s']:.0f} tokens/s",
                flush=True,
            )
    targets = REPORT.targets(res, args.every)
    for t in targets:
        print(f"TARGET {t['target']}: {t['measured']} -> {'MET' if t['met'] else 'NOT MET'}")
    data = cli.begin(args, "trainer", load, {"torch": MODEL_SEED, "trainer": 0})
    data.update(
        model="Llama h32/2L/86" if args.tiny else "Llama h256/4L/688", config=vars(args), results=res, targets=targets
    )
    cli.finish(data, started, any(contended(r["other_cores"]) for r in res.values()))
    cli.publish(args, data, REPORT)


def main(argv: list[str] | None = None) -> int:
    return cli.run(parse_args(argv), REPORT, measure)


if __name__ == "__main__":
    sys.exit(main())
