"""Scaling: optimizer step time vs parameter count, hf_muon against torch AdamW, and hf_muon's NS share.

What is measured
----------------
Five Llama sizes (random weights from a config, never downloaded; vocab 8,192, untied embeddings,
head dim 64, intermediate ≈ 8/3·hidden rounded up to a multiple of 8, fp32), width and depth grown
together: hidden 128/256/384/512/768 with 2/4/6/8/12 layers (≈2.5M to ≈98M params; the hidden-256
size is bench_step.py's llama-7.4M). For each size and each optimizer:

* **step ms**: median wall time of ``optimizer.step()`` alone (no forward/backward) over the timed
  steps, after warmup steps (``common.time_calls``). Gradients are fixed seeded Gaussian tensors
  (std 0.01), the same for both optimizers, copied back into ``p.grad`` (untimed) before every step.
  Weights are not reset between the two optimizers (step time does not depend on their values).
  On CUDA the timed region ends with ``torch.cuda.synchronize()``.
* Optimizers: ``torch.optim.AdamW`` (lr 1e-3, defaults: ``foreach`` chosen by torch) on every
  parameter, and ``hf_muon.Muon(hf_muon.param_groups(model), lr=1e-3)`` (defaults: Polar Express,
  5 NS steps, batched, NS dtype ``auto``; its AdamW groups for embeddings, head and norms).
* **NS ms / NS share**: hf_muon's orthogonalization (its ``orthogonalize`` call: batched
  Newton-Schulz over all Muon matrices, including stacking and normalisation) timed inside the same
  timed steps by wrapping the optimizer instance's ``orthogonalize``; share = median NS ms / median
  step ms. NS GFLOP/s counts ``5·(4·m²·n + 2·m³)`` FLOPs per wide (m ≤ n) matrix.
* **slope**: least-squares slope of log(step ms) vs log(params) over the sizes, per optimizer
  (1.0 = linear in params). AdamW is linear in params; NS is cubic in width, so hf_muon's slope is
  steeper and its NS share grows with size.

Output: ``results/scaling.json``, ``results/scaling.png`` (step ms vs params, log-log) and the
``scaling`` section of ``RESULTS.md``. Full run ≈1 minute on 2 CPU cores (the 98M size's hf_muon step
is ≈3-4 s and gets 2 warmup + 5 timed steps; budget ≤ 4 minutes). ``--tiny`` (four very small
sizes, one thread, < 30 s) writes ``results/scaling_tiny.json`` only; its plot goes to a temporary
folder that is removed.

Usage::

    python benchmarks/bench_scaling.py                      # full run
    python benchmarks/bench_scaling.py --tiny --allow-busy  # smoke test
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

import hf_muon  # noqa: E402
from hf_muon.ns.newton_schulz import resolve_dtype  # noqa: E402

MODEL_SEED = 0
GRAD_SEED = 1
GRAD_STD = 0.01
LR = 1e-3
NS_STEPS = 5  # hf_muon's default ns_steps
SLOW_STEP_S = 30.0


@dataclass(frozen=True)
class Size:
    hidden: int
    layers: int
    head_dim: int
    vocab: int
    repeats: int  # timed steps

    @property
    def intermediate(self) -> int:
        """8/3·hidden rounded up to a multiple of 8 (= 8·⌈hidden/3⌉): 344, 688, 1024, 1368, 2048."""
        return -(-self.hidden // 3) * 8

    @property
    def name(self) -> str:
        return f"h{self.hidden}-L{self.layers}"


FULL_SIZES = (
    Size(128, 2, 64, 8192, 10),
    Size(256, 4, 64, 8192, 10),
    Size(384, 6, 64, 8192, 10),
    Size(512, 8, 64, 8192, 10),
    Size(768, 12, 64, 8192, 5),
)
TINY_SIZES = (
    Size(32, 1, 16, 512, 2),
    Size(48, 2, 16, 512, 2),
    Size(64, 2, 16, 512, 2),
    Size(96, 3, 16, 512, 2),
)


def build_model(size: Size) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    common.seed_everything(MODEL_SEED)
    config = LlamaConfig(
        vocab_size=size.vocab,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.hidden // size.head_dim,
        num_key_value_heads=size.hidden // size.head_dim,
        tie_word_embeddings=False,
        max_position_embeddings=512,
    )
    return LlamaForCausalLM(config).float()


def ns_flops(shape: tuple[int, ...], steps: int = NS_STEPS) -> int:
    """FLOPs of ``steps`` Newton-Schulz iterations on one (m, n) matrix in wide orientation."""
    m, n = sorted(shape[-2:])
    return math.prod(shape[:-2]) * steps * (4 * m * m * n + 2 * m**3)


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x) (None for fewer than two points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


# --------------------------------------------------------------------------- timing
def time_optimizer(
    name: str,
    build: Callable[[], torch.optim.Optimizer],
    params: list[nn.Parameter],
    grads: list[torch.Tensor],
    *,
    warmup: int,
    repeats: int,
    device: torch.device,
    ns: bool,
) -> dict:
    """Median ``step()`` time of one optimizer; with ``ns``, the time inside its ``orthogonalize`` too."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def load_grads() -> None:
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
        if sync is not None:
            sync()

    record: dict = {"name": name}
    opt = None
    try:
        opt = build()
        ns_ms: list[float] = []
        if ns:
            inner = opt.orthogonalize

            def timed_orthogonalize(jobs):
                t0 = time.perf_counter()
                out = inner(jobs)
                if sync is not None:
                    sync()
                ns_ms.append((time.perf_counter() - t0) * 1e3)
                return out

            opt.orthogonalize = timed_orthogonalize  # instance attribute: step() calls self.orthogonalize
        timing = common.time_calls(
            opt.step, warmup=warmup, repeats=repeats, before=load_grads, sync=sync, slow_s=SLOW_STEP_S
        )
        record.update(
            status="ok", step_ms=timing.median_ms, timing=timing.to_dict(), other_cores=timing.other_cores
        )
        if ns:
            timed = ns_ms[-len(timing.times_ms) :]
            record["ns_ms"] = statistics.median(timed)
            record["ns_times_ms"] = timed
            record["ns_share"] = record["ns_ms"] / timing.median_ms
    except Exception as e:  # reported with its reason, never dropped
        record.update(status="failed", reason=f"{type(e).__name__}: {e}"[:400], step_ms=None)
    finally:
        del opt
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return record


def run_size(size: Size, *, warmup: int, repeats: int | None, device: torch.device) -> dict:
    t0 = time.time()
    model = build_model(size).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    muon = [r.param for r in hf_muon.route(model) if r.kind == "muon"]
    gen = torch.Generator().manual_seed(GRAD_SEED)
    grads = [
        (torch.randn(p.shape, generator=gen) * GRAD_STD).to(device=device, dtype=p.dtype) for p in params
    ]
    n_params = sum(p.numel() for p in params)
    n_muon = sum(p.numel() for p in muon)
    flops = sum(ns_flops(tuple(p.shape)) for p in muon)
    reps = repeats or size.repeats
    print(
        f"== {size.name}: {n_params:,} params, {n_muon:,} in {len(muon)} Muon matrices; "
        f"warmup {warmup}, {reps} timed steps",
        flush=True,
    )
    adamw, adamw_fused = (
        time_optimizer(name, lambda kw=kw: torch.optim.AdamW(params, lr=LR, **kw), params, grads, warmup=warmup,
                       repeats=reps, device=device, ns=False)
        for name, kw in (("AdamW (torch)", {}), ("AdamW fused", {"fused": True}))
    )
    hf = time_optimizer(
        "hf_muon",
        lambda: hf_muon.Muon(hf_muon.param_groups(model), lr=LR),
        params,
        grads,
        warmup=warmup,
        repeats=reps,
        device=device,
        ns=True,
    )
    if hf.get("ns_ms"):
        hf["ns_gflops"] = flops / (hf["ns_ms"] * 1e-3) / 1e9
    if hf.get("step_ms") and adamw.get("step_ms"):
        hf["ratio_adamw"] = hf["step_ms"] / adamw["step_ms"]
    if hf.get("step_ms") and adamw_fused.get("step_ms"):
        hf["ratio_adamw_fused"] = hf["step_ms"] / adamw_fused["step_ms"]
    for r in (adamw, adamw_fused, hf):
        shown = f"{r['step_ms']:.2f} ms" if r["status"] == "ok" else f"FAILED ({r['reason'][:160]})"
        extra = (
            f"  (NS {r['ns_ms']:.2f} ms = {100 * r['ns_share']:.0f}%)" if r.get("ns_ms") is not None else ""
        )
        print(f"  {r['name']:<16} {shown}{extra}", flush=True)
    out = {
        "size": {**asdict(size), "intermediate": size.intermediate, "name": size.name},
        "params": n_params,
        "muon_params": n_muon,
        "muon_matrices": len(muon),
        "ns_gflop_per_step": flops / 1e9,
        "warmup": warmup,
        "repeats": reps,
        "adamw": adamw,
        "adamw_fused": adamw_fused,
        "hf_muon": hf,
        "seconds": time.time() - t0,
    }
    return out  # the model, its gradients and both optimizers are freed with this frame


# --------------------------------------------------------------------------- plot and report
def write_plot(data: dict, folder: Path) -> str:
    """Step ms vs params on log-log axes; returns the path or the reason no plot was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"matplotlib not available ({e})"
    rows = data["sizes"]
    fig, ax = plt.subplots(figsize=(7, 5))
    for key, field, label, style in (
        ("adamw", "step_ms", "torch AdamW step", dict(color="tab:blue", marker="o")),
        ("adamw_fused", "step_ms", "torch AdamW (fused) step", dict(color="tab:cyan", marker="s")),
        ("hf_muon", "step_ms", "hf_muon step", dict(color="tab:red", marker="o")),
        ("hf_muon", "ns_ms", "hf_muon NS part", dict(color="tab:red", marker="x", ls="--", alpha=0.6)),
    ):
        pts = [(r["params"], r[key].get(field)) for r in rows if r[key].get(field)]
        if pts:
            slope = loglog_slope([p[0] for p in pts], [p[1] for p in pts])
            ax.plot(*zip(*pts), label=label + (f" (slope {slope:.2f})" if slope is not None else ""), **style)
    for r in rows:
        if r["hf_muon"].get("step_ms"):
            ax.annotate(
                r["size"]["name"],
                (r["params"], r["hf_muon"]["step_ms"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("parameters")
    ax.set_ylabel("optimizer.step() median ms")
    mach = data["machine"]
    threads = mach["torch_threads"]
    where = (
        mach["gpu"]["name"] if mach.get("gpu") else f"{mach['cpu']}, {threads} thread{'s' * (threads != 1)}"
    )
    ax.set_title(f"Optimizer step time vs model size ({where})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def fmt_count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def report(data: dict) -> str:
    """The markdown section for RESULTS.md (also printed)."""
    lines = [
        "## Scaling with model size (benchmarks/bench_scaling.py)",
        "",
        common.run_line(data) + f". Whole benchmark {data['seconds']:.0f} s.",
        "",
        "Median wall time of `optimizer.step()` alone (fixed seeded gradients, restored untimed before every "
        f"step) for Llamas of growing width and depth (vocab {data['sizes'][0]['size']['vocab']:,}, untied, fp32). "
        "torch AdamW on every parameter (default path and `fused=True`) vs `hf_muon.Muon(param_groups(model))` "
        "at defaults (AdamW part fused, Polar Express, "
        f"{NS_STEPS} NS steps, batched, NS dtype {data['ns_dtype']}). NS = time inside hf_muon's `orthogonalize` "
        "within the same steps; share = NS ms / step ms. Raw numbers: "
        f"`benchmarks/results/{data['json_name']}`.",
        "",
    ]
    rows = []
    for r in data["sizes"]:
        a, af, h = r["adamw"], r.get("adamw_fused", {}), r["hf_muon"]
        notes = []
        for label, rec in (("AdamW", a), ("AdamW fused", af), ("hf_muon", h)):
            if not rec:
                continue
            if rec["status"] != "ok":
                notes.append(f"{label} FAILED: {rec['reason'][:160]}")
            elif (rec.get("other_cores") or 0) > common.MAX_OTHER_CORES:
                notes.append(f"{label} CONTENDED ({rec['other_cores']:.1f} other cores)")
            if rec.get("timing", {}).get("reduced"):
                notes.append(f"{label} slow: 1 timed step")
        rows.append(
            [
                r["size"]["name"],
                fmt_count(r["params"]),
                fmt_count(r["muon_params"]),
                common.fmt_ms(a.get("step_ms")),
                common.fmt_ms(af.get("step_ms")),
                common.fmt_ms(h.get("step_ms")),
                common.fmt_ratio(h.get("ratio_adamw")),
                common.fmt_ratio(h.get("ratio_adamw_fused")),
                common.fmt_ms(h.get("ns_ms")),
                "—" if h.get("ns_share") is None else f"{100 * h['ns_share']:.0f}%",
                "—" if h.get("ns_gflops") is None else f"{h['ns_gflops']:.0f}",
                f"{r['warmup']}+{r['repeats']}",
                "; ".join(notes),
            ]
        )
    lines.append(
        common.markdown_table(
            [
                "size",
                "params",
                "Muon params",
                "AdamW ms",
                "AdamW fused ms",
                "hf_muon ms",
                "×AdamW",
                "×AdamW fused",
                "NS ms",
                "NS share",
                "NS GFLOP/s",
                "warmup+timed",
                "note",
            ],
            rows,
            "lrrrrrrrrrrrl",
        )
    )
    slopes = data["slopes"]
    lines += [
        "",
        "Log-log slope of step ms vs params over the sizes (1 = linear): "
        + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} —" for k, v in slopes.items())
        + ".",
    ]
    if isinstance(data.get("plot"), str) and data["plot"].endswith(".png") and not data["args"]["tiny"]:
        lines += ["", f"![step ms vs params](results/{Path(data['plot']).name})"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = common.standard_parser(__doc__, "scaling", plots="scaling.png",
                                tiny_help="four very small sizes, 1 thread, 1 warmup + 2 timed steps (smoke test, < 30 s)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per optimizer (default: per size)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (default 2, tiny 1)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load, device = common.start(args)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 2)
    started = time.time()
    sizes = TINY_SIZES if args.tiny else FULL_SIZES
    results = []
    for s in sizes:
        results.append(run_size(s, warmup=warmup, repeats=args.repeats, device=device))
        gc.collect()

    def pts(key: str, field: str) -> tuple[list[float], list[float]]:
        ok = [r for r in results if r[key].get(field)]
        return [r["params"] for r in ok], [r[key][field] for r in ok]

    data: dict = {
        "benchmark": "scaling",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": common.machine_info(args.device),
        "versions": common.package_versions(),
        "seeds": {"model": MODEL_SEED, "grads": GRAD_SEED, "grad_std": GRAD_STD},
        "load": load,
        "ns_dtype": str(resolve_dtype("auto", device, torch.float32)).replace("torch.", ""),
        "sizes": results,
        "slopes": {
            "AdamW": loglog_slope(*pts("adamw", "step_ms")),
            "AdamW fused": loglog_slope(*pts("adamw_fused", "step_ms")),
            "hf_muon": loglog_slope(*pts("hf_muon", "step_ms")),
            "hf_muon NS": loglog_slope(*pts("hf_muon", "ns_ms")),
        },
    }
    data["contended"] = any(
        (r[k].get("other_cores") or 0) > common.MAX_OTHER_CORES for r in results for k in ("adamw", "adamw_fused", "hf_muon")
    )
    data["load_at_end"] = common.load_average()
    data["seconds"] = time.time() - started
    data["plot"] = common.draw_plots(args, lambda folder: write_plot(data, folder))
    common.publish(args, data, "scaling", "scaling", report)
    print(f"plot: {data['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
