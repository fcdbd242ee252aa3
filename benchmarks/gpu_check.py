"""The GPU check: what one lent GPU should answer, in one script (≤ 8 min on one H100).

    python benchmarks/gpu_check.py            # make gpu-check: CUDA, full sizes; results/gpu_check.json + RESULTS.md
    python benchmarks/gpu_check.py --dry      # make gpu-check-dry: every code path on CPU at tiny sizes

Parts, in order (each failure is recorded with its exception text and the others still run):

1. **device checks**: the pytest subset that looks at CUDA (``-k cuda``), and on the device: one hf_muon step
   (fp32 Newton-Schulz) against the same step on CPU, bf16 weights with ``momentum_dtype=float32``, and a
   ``state_dict`` round trip through ``torch.load(weights_only=True)`` that continues bit-identically.
2. **step table** (:mod:`benchmarks.stepping`, :mod:`benchmarks.peers`, :mod:`benchmarks.ns_floor`): GPT-2 small
   and a ~1.1B Llama (TinyLlama's shape: hidden 2048, 22 layers, intermediate 5632, GQA 32/4, vocab 32000), weights
   in bf16: ``optimizer.step()`` of hf_muon, ``torch.optim.Muon`` (+ AdamW) and fused AdamW, with the bare
   Newton-Schulz matmul floor of the same Muon shapes.
3. **Trainer** on one GPU: ``--optim muon`` vs ``--optim adamw_torch_fused``, bf16, tokens/s and the optimizer's
   share of the step (``on_pre_optimizer_step`` → ``on_optimizer_step``, synchronized).

``--dry`` runs the same code on CPU with tiny models and 2 timed steps, writes the same JSON to
``runs/gpu_check_dry.json`` with ``"dry_run": true``, and never touches RESULTS.md: its timings are not results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the benchmarks package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from benchmarks.machine import REPO_DIR, machine_info, package_versions
from benchmarks.models import MODELS, llama
from benchmarks.ns_floor import ns_throughput
from benchmarks.peers import step_peer
from benchmarks.stepping import make_case, time_peers

PEERS = ("AdamW (torch, fused=True)", "torch.optim.Muon + AdamW", "hf_muon")
RESULTS_MD = REPO_DIR / "benchmarks" / "RESULTS.md"
START, END = "<!-- gpu_check:start -->", "<!-- gpu_check:end -->"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _guard(fn, *a, **kw) -> dict:
    try:
        return {"status": "ok", **fn(*a, **kw)}
    except Exception as e:  # a part that fails is reported, the others still run
        return {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:2000]}


# --------------------------------------------------------------------------- 1. device checks
def pytest_subset(dry: bool) -> dict:
    """The suite's dtype / bf16 / CUDA tests under this machine's torch build (the tests take no device argument:
    what runs on the GPU itself is :func:`device_checks`)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "slow or not slow",
        "-k",
        "cuda or bf16 or dtype",
        "-p",
        "no:cacheprovider",
        "tests/ns",
        "tests/optim",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_DIR, timeout=240)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode not in (0, 5):  # 5: nothing selected
        raise RuntimeError(f"pytest subset failed: {tail[0]}\n{proc.stdout[-1500:]}")
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "summary": tail[0], "dry": dry}


def _tiny_model():
    torch.manual_seed(0)
    return llama(64, 2, 172, 256, max_position_embeddings=64)


def _step(model, cfg, x):
    import hf_muon

    opt = hf_muon.create_optimizer(model, hf_muon.MuonConfig(**cfg))
    for _ in range(2):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    return opt


def device_checks(device) -> dict:
    import hf_muon

    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    cfg = dict(lr=1e-2, weight_decay=0.1, ns_dtype="float32")
    ref, dev = _tiny_model(), _tiny_model().to(device)
    _step(ref, cfg, x)
    opt = _step(dev, cfg, x.to(device))
    num = sum((a.detach().cpu() - b.detach()).norm() ** 2 for a, b in zip(dev.parameters(), ref.parameters())) ** 0.5
    rel = float(num / sum(p.detach().norm() ** 2 for p in ref.parameters()) ** 0.5)
    bf16 = _tiny_model().to(device=device, dtype=torch.bfloat16)
    bopt = _step(bf16, dict(cfg, ns_dtype="auto", momentum_dtype="float32"), x.to(device))
    moments = {str(s["momentum_buffer"].dtype) for s in bopt.state.values() if "momentum_buffer" in s}
    finite = all(torch.isfinite(p).all().item() for p in bf16.parameters())
    with tempfile.TemporaryDirectory() as d:
        torch.save(opt.state_dict(), Path(d) / "opt.pt")
        again = hf_muon.create_optimizer(dev, hf_muon.MuonConfig(**cfg))
        again.load_state_dict(torch.load(Path(d) / "opt.pt", weights_only=True))
    twin = [p.detach().clone() for p in dev.parameters()]
    for o in (opt, again):
        with torch.no_grad():
            for p, w in zip(dev.parameters(), twin):
                p.copy_(w)
        dev(input_ids=x.to(device), labels=x.to(device)).loss.backward()
        o.step()
        o.zero_grad()
        if o is opt:
            first = [p.detach().clone() for p in dev.parameters()]
    identical = all(torch.equal(a, b) for a, b in zip(first, dev.parameters()))
    return {
        "rel_device_vs_cpu_fp32": rel,
        "bf16_momentum_dtypes": sorted(moments),
        "bf16_finite": finite,
        "resume_bit_identical": identical,
    }


# --------------------------------------------------------------------------- 2. step table
def _models(dry: bool) -> dict:
    if dry:
        return {
            "gpt2-small (tiny)": lambda: MODELS["gpt2-small"].build(True),
            "llama-1.1B (tiny)": lambda: llama(64, 2, 172, 512, heads=4, kv_heads=2),
        }
    return {
        "gpt2-small": lambda: MODELS["gpt2-small"].build(False),
        "llama-1.1B": lambda: llama(2048, 22, 5632, 32000, heads=32, kv_heads=4),
    }


def step_table(device, dry: bool) -> dict:
    out = {"models": {}}
    for name, build in _models(dry).items():
        case = make_case(name, build().to(torch.bfloat16), device)
        records = time_peers(
            case,
            [step_peer(p, device) for p in PEERS],
            tiny=dry,
            device=device,
            warmup=1 if dry else 3,
            repeats=2 if dry else 10,
            slow_s=30.0,
        )
        adamw = next((r["step_ms"] for r in records if r["name"] == PEERS[0] and r["status"] == "ok"), None)
        for r in records:
            r["x_fused_adamw"] = r["step_ms"] / adamw if adamw and r["step_ms"] else None
            r.pop("timing", None)
        floor = ns_throughput(
            name,
            [p.shape for p in case.muon],
            device,
            ["bfloat16"],
            warmup=1,
            repeats=2 if dry else 10,
            extra=False,
        )
        out["models"][name] = {**case.summary(), "optimizers": records, "ns_floor": floor}
        del case
    return out


# --------------------------------------------------------------------------- 3. Trainer
def _timer_class(base):
    class Timer(base):
        """Step time (``on_step_begin`` → ``on_step_end``) and optimizer time (``on_pre_optimizer_step`` →
        ``on_optimizer_step``), synchronized on CUDA."""

        def __init__(self, device):
            self.device, self.step_s, self.opt_s = device, [], []

        def on_step_begin(self, a, s, c, **kw):
            _sync(self.device)
            self.t = time.perf_counter()

        def on_pre_optimizer_step(self, a, s, c, **kw):
            _sync(self.device)
            self.o = time.perf_counter()

        def on_optimizer_step(self, a, s, c, **kw):
            _sync(self.device)
            self.opt_s.append(time.perf_counter() - self.o)

        def on_step_end(self, a, s, c, **kw):
            _sync(self.device)
            self.step_s.append(time.perf_counter() - self.t)

    return Timer


def trainer_runs(device, dry: bool, data_dir: str | None) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from benchmarks.bench_trainer import _data

    block, batch, steps, warm = (32, 2, 6, 2) if dry else (512, 16, 40, 10)
    ds, vocab = _data(data_dir, dry, block)
    res = {}
    for optim in ("muon", "adamw_torch_fused"):
        timer = _timer_class(TrainerCallback)(device)
        model = llama(64, 2, 172, vocab) if dry else llama(768, 12, 2048, vocab, heads=12)
        with tempfile.TemporaryDirectory() as d:
            args = TrainingArguments(
                d,
                use_cpu=device.type != "cuda",
                bf16=not dry,
                optim=optim,
                learning_rate=1e-3,
                max_steps=steps,
                per_device_train_batch_size=batch,
                save_strategy="no",
                report_to=[],
                logging_steps=10_000,
                disable_tqdm=True,
                seed=0,
            )
            Trainer(model=model, args=args, train_dataset=ds, callbacks=[timer]).train()
        step_s, opt_s = timer.step_s, timer.opt_s
        step, opt = statistics.median(step_s[warm:]), statistics.median(opt_s[warm:])
        res[optim] = {
            "step_ms": 1e3 * step,
            "optimizer_ms": 1e3 * opt,
            "optimizer_share": opt / step,
            "tokens_per_s": batch * block / step,
            "steps_timed": len(step_s[warm:]),
        }
    res["muon_tokens_per_s_vs_adamw"] = res["muon"]["tokens_per_s"] / res["adamw_torch_fused"]["tokens_per_s"]
    return res


# --------------------------------------------------------------------------- report
def markdown(data: dict) -> str:
    m = data["machine"]
    lines = [START, "## GPU check (benchmarks/gpu_check.py, `make gpu-check`)", ""]
    if data["dry_run"]:
        lines += [
            "**DRY RUN** (`make gpu-check-dry`): CPU, tiny models, 2 timed steps. It proves the code paths run; "
            'its timings are not results, and "GPU" below means the CPU.',
            "",
        ]
    lines += [
        f"Run {data['date']} on {m.get('gpu') or m.get('cpu')}; torch {data['versions'].get('torch')}; "
        f"{data['seconds']:.0f} s. Raw numbers: `benchmarks/results/gpu_check.json`.",
        "",
    ]
    dc = data["device_checks"]
    lines += [
        f"Device checks: {dc.get('status')}; hf_muon step on the GPU vs CPU (fp32 NS) relative difference "
        f"{dc.get('rel_device_vs_cpu_fp32', float('nan')):.1e}; bf16 weights with momentum_dtype=float32: momentum "
        f"{dc.get('bf16_momentum_dtypes')}, finite {dc.get('bf16_finite')}; resume bit-identical: {dc.get('resume_bit_identical')}. "
        f"pytest dtype/bf16/cuda subset: {data['pytest'].get('summary')}.",
        "",
    ]
    if data["step_table"]["status"] != "ok":
        lines += [f"Step table FAILED: {data['step_table']['reason'][:300]}", ""]
    for name, t in data["step_table"].get("models", {}).items():
        floor = t["ns_floor"]["rows"]
        lines += [
            f"### {name} (bf16 weights): {t['params']:,} params, {t['muon_params']:,} on Muon",
            "",
            "| optimizer | step ms | × fused AdamW |",
            "| :-- | --: | --: |",
        ]
        for r in t["optimizers"]:
            ms = f"{r['step_ms']:.2f}" if r["step_ms"] else f"failed: {r.get('reason', '')[:80]}"
            ratio = f"{r['x_fused_adamw']:.2f}×" if r.get("x_fused_adamw") else ""
            lines.append(f"| {r['name']} | {ms} | {ratio} |")
        for row in floor:
            lines += [
                "",
                f"Newton-Schulz {row['dtype']} on these Muon shapes: hf_muon batched "
                f"{row['hf_muon_batched']['ms']:.2f} ms, bare matmul floor {row['floor']['ms']:.2f} ms "
                f"({row['batched_vs_floor']:.2f}× the floor's throughput).",
            ]
        lines.append("")
    tr = data["trainer"]
    if tr.get("status") == "ok":
        model = "Llama h64/2L, fp32" if data["dry_run"] else "Llama h768/12L, bf16"
        lines += [
            f"### Trainer, one GPU ({model})",
            "",
            "| optim | tokens/s | step ms | optimizer share |",
            "| :-- | --: | --: | --: |",
        ]
        for k in ("muon", "adamw_torch_fused"):
            r = tr[k]
            lines.append(
                f"| {k} | {r['tokens_per_s']:,.0f} | {r['step_ms']:.1f} | {100 * r['optimizer_share']:.1f} % |"
            )
    lines += ["", END]
    return "\n".join(lines)


def write_section(text: str) -> None:
    md = RESULTS_MD.read_text()
    if START in md:
        md = md[: md.index(START)] + text + md[md.index(END) + len(END) :]
    else:
        md = md.rstrip("\n") + "\n\n" + text + "\n"
    RESULTS_MD.write_text(md)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="every code path on CPU at tiny sizes; no RESULTS.md")
    ap.add_argument("--data", default=None, help="data mirror (default $HF_MUON_DATA, else ../shared/data)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if not a.dry and not torch.cuda.is_available():
        print("gpu-check needs a CUDA device (none found); `make gpu-check-dry` runs the code paths on CPU.")
        return 2
    device = torch.device("cpu" if a.dry else "cuda")
    started = time.time()
    data = {
        "benchmark": "gpu_check",
        "dry_run": a.dry,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine_info(device.type),
        "versions": package_versions(),
    }
    if device.type == "cuda":
        data["machine"]["gpu"] = torch.cuda.get_device_name()
    for key, fn in (
        ("pytest", lambda: pytest_subset(a.dry)),
        ("device_checks", lambda: device_checks(device)),
        ("step_table", lambda: step_table(device, a.dry)),
        ("trainer", lambda: trainer_runs(device, a.dry, a.data)),
    ):
        t0 = time.time()
        data[key] = _guard(fn)
        print(
            f"[{'dry ' if a.dry else ''}gpu-check] {key}: {data[key]['status']} ({time.time() - t0:.0f} s)"
            + (f" {data[key]['reason'][:300]}" if data[key]["status"] == "failed" else ""),
            flush=True,
        )
    data["seconds"] = time.time() - started
    out = (
        Path(a.out)
        if a.out
        else REPO_DIR / ("runs/gpu_check_dry.json" if a.dry else "benchmarks/results/gpu_check.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(
        f"wrote {out} ({data['seconds']:.0f} s)"
        + (" — DRY RUN: tiny CPU sizes, timings are not results" if a.dry else "")
    )
    text = _guard(lambda: {"text": markdown(data)})
    if a.dry:  # the report's code path runs too, but its section goes beside the JSON, never into RESULTS.md
        out.with_suffix(".md").write_text(text.get("text", text.get("reason", "")) + "\n")
    elif text["status"] == "ok":
        write_section(text["text"])
    failed = [k for k in ("pytest", "device_checks", "step_table", "trainer") if data[k]["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
