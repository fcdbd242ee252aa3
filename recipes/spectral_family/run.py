#!/usr/bin/env python
"""The spectral family ``U Σ^p Vᵀ`` on a tiny GPT-2: which member trains best at its best lr.

Usage::

    python recipes/spectral_family/run.py recipes/spectral_family/config.yaml [--out DIR]

*Delving into Muon and Beyond* (arXiv 2602.04669; guide ``papers.md`` §3) applies ``Ψ_p(X) = U Σ^p Vᵀ``,
p ∈ {1, ½, ¼, 0}, to two bases: the momentum (mSGD, mSGDS, mSGDQ, mSGDZ = Muon; non-Nesterov
momentum) and Adam's bias-corrected ``m̂/(√v̂+ε)`` (Adam, AdamS, AdamQ, AdamZ). Here every variant is
``hf_muon.Muon(spectral_power=p, update_base=...)`` on the matrices of a ``GPT2LMHeadModel`` built from a
config; embeddings, the (tied) head, norms and biases stay on AdamW with one fixed lr for all variants.
Scale mode: ``none`` for p > 0 (the update keeps the input's scale; the lr is tuned), and for p = 0
``z_scale_mode`` (default ``keller``: ``√max(1, d_out/d_in)``, the convention of the paper's code).

Each variant gets an lr grid; the table reports the best final validation loss per variant and the
report checks the paper's orderings "AdamS ≈ Adam ≈ AdamQ < AdamZ" and "Muon ≈ mSGDQ ≪ mSGD" against a
noise tolerance measured from extra seeds. Each training run writes ``<out>/runs/<id>.json``; re-running
skips finished runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from hf_muon.lab import research as R
from hf_muon.lab.models import build_gpt2, param_counts

# Paper (BeyondMuon figures, guide §3): best lr and final val loss of GPT-2 124M on OpenWebText, 100B tokens.
PAPER = {
    "Adam": (4e-3, 2.871),
    "AdamS": (1e-2, 2.870),
    "AdamQ": (2e-2, 2.872),
    "AdamZ": (7e-3, 2.879),
    "mSGD": (5.0, 3.092),
    "mSGDS": (0.2, 2.895),
    "mSGDQ": (4e-2, 2.876),
    "mSGDZ": (7e-3, 2.887),
}
FAMILIES = {"adam": ["Adam", "AdamS", "AdamQ", "AdamZ"], "momentum": ["mSGD", "mSGDS", "mSGDQ", "mSGDZ"]}

DEFAULTS = {
    "name": "spectral_family",
    "data": dict(R.DATA_DEFAULTS, block_size=64),
    "model": {"width": 128, "layers": 4, "heads": 4},
    "train": dict(R.TRAIN_DEFAULTS, grad_clip=1.0),
    "common": {
        "adamw_lr": 3e-3,
        "betas": [0.9, 0.95],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "nesterov": False,
        "ns_steps": 5,
        "coefficients": "polar_express",
        "ns_dtype": "auto",
        "z_scale_mode": "keller",
        "scale_mode": "none",
    },
    "variants": {},  # name -> {base: momentum|adam, p: float, lrs: [..]}
    "comparison": {"approx_tol": 0.02, "much_less": 0.1},
    "noise": {"variants": ["Adam", "mSGDZ"], "seeds": [1]},
    "throughput_gflops": R.DEFAULT_THROUGHPUT_GFLOPS,
    "ns_throughput_gflops": R.DEFAULT_NS_THROUGHPUT_GFLOPS,
    "threads": None,  # torch threads (null: torch's default)
}


def variants(cfg: dict) -> dict[str, dict]:
    out = {}
    for name, v in cfg["variants"].items():
        v = R.merge_config({"base": "momentum", "p": 0.0, "lrs": []}, v, f"variants.{name}")
        if v["base"] not in ("momentum", "adam"):
            raise ValueError(f"variants.{name}.base: {v['base']!r}; valid: momentum, adam")
        if not 0 <= float(v["p"]) <= 1:
            raise ValueError(f"variants.{name}.p must be in [0, 1]")
        if not v["lrs"] or any(float(x) <= 0 for x in v["lrs"]):
            raise ValueError(f"variants.{name}.lrs: give a non-empty list of positive lrs")
        out[name] = v
    if not out:
        raise ValueError("variants: define at least one variant")
    return out


def run_id(variant: str, lr: float, seed: int | None = None) -> str:
    """``Adam_lr0.003`` for a grid run (the config's seed), ``Adam_lr0.003_seed1`` for an extra-seed run."""
    tag = re.sub(r"[^0-9a-zA-Z.+-]", "_", f"{lr:g}")
    return f"{variant}_lr{tag}" + (f"_seed{seed}" if seed is not None else "")


def optimizer_cfg(cfg: dict, v: dict, lr: float) -> dict:
    c = cfg["common"]
    p = float(v["p"])
    return {
        "lr": float(lr),
        "adamw_lr": c["adamw_lr"],
        "betas": c["betas"],
        "eps": c["eps"],
        "weight_decay": c["weight_decay"],
        "momentum": c["momentum"],
        "nesterov": c["nesterov"],
        "ns_steps": c["ns_steps"],
        "coefficients": c["coefficients"],
        "ns_dtype": c["ns_dtype"],
        "scale_mode": c["z_scale_mode"] if p == 0 else c["scale_mode"],
        "spectral_power": p,
        "update_base": v["base"],
    }


def build_model(cfg: dict, vocab: int, seed: int):
    m = cfg["model"]
    return build_gpt2(
        int(m["width"]), int(m["layers"]), int(m["heads"]), vocab, int(cfg["data"]["block_size"]), seed=seed
    )


def spec_of(cfg: dict, name: str, v: dict, lr: float, seed: int) -> dict:
    """What determines a run's result (a stored run is reused only when this is equal)."""
    return {
        "recipe": "spectral_family",
        "variant": name,
        "base": v["base"],
        "p": float(v["p"]),
        "lr": float(lr),
        "seed": seed,
        "data": cfg["data"],
        "model": cfg["model"],
        "train": dict(cfg["train"], seed=seed),
        "optimizer": optimizer_cfg(cfg, v, lr),
    }


def execute(cfg: dict, data: R.LMData, name: str, v: dict, lr: float, seed: int) -> dict:
    model = build_model(cfg, data.vocab_size, seed)
    opt = R.build_optimizer(model, optimizer_cfg(cfg, v, lr))
    res = R.train(model, opt, data, dict(cfg["train"], seed=seed), desc=f"{name} lr={lr:g} seed={seed}")
    res["params"] = param_counts(model)
    return res


def transform_flops(shape, p: float, ns_steps: int, iters: int = 25) -> float:
    """FLOPs of ``Ψ_p`` on one matrix as ``hf_muon`` computes it (p=½: Gram + two coupled square-root
    iterations of ``iters`` steps with 3 m×m products each + the final product; p=¼: twice)."""
    m, n = min(shape), max(shape)
    if p == 0:
        return R.ns_flops(shape, ns_steps)
    if p == 1:
        return 0.0
    half = 2 * m * m * n + 2 * iters * 3 * 2 * m**3 + 2 * m * m * n
    return half * (2 if p == 0.25 else 1)


def estimate(cfg: dict, vs: dict, vocab: int) -> dict:
    import torch

    t = cfg["train"]
    block = int(cfg["data"]["block_size"])
    tokens = int(t["steps"]) * int(t["batch_size"]) * block
    with torch.device("meta"):
        model = build_model(cfg, vocab, 0)
    shapes = [tuple(p.shape) for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("transformer.h.")]
    base = R.train_flops(model, tokens, block)
    train, ns, runs = 0.0, 0.0, 0
    for name, v in vs.items():
        p = float(v["p"])
        per_step = sum(transform_flops(s, p, int(cfg["common"]["ns_steps"])) for s in shapes) * int(t["steps"])
        k = len(v["lrs"]) + (len(cfg["noise"]["seeds"]) if name in cfg["noise"]["variants"] else 0)
        train += k * (base + (per_step if p > 0 else 0.0))  # p = 1/2, 1/4: fp32 Gram iterations
        ns += k * (per_step if p == 0 else 0.0)  # p = 0: Newton-Schulz
        runs += k
    return R.time_estimate(train, ns, cfg, runs=runs)


# ------------------------------------------------------------------------------------------ analysis
def relation(a: float | None, b: float | None, kind: str, tol: float, much: float) -> dict:
    """Evaluate ``a ≈ b`` / ``a < b`` / ``a ≪ b`` on final losses (lower is better)."""
    if a is None or b is None:
        return {"verdict": "n/a (a variant diverged at every lr)", "holds": False, "delta": None}
    d = b - a
    if kind == "≈":
        holds = abs(d) <= tol
        return {"verdict": "holds" if holds else "does not hold", "holds": holds, "delta": d}
    if kind == "<":
        if d > tol:
            return {"verdict": "holds", "holds": True, "delta": d}
        if d >= -tol:
            return {"verdict": "within noise (not resolved)", "holds": False, "delta": d}
        return {"verdict": "reversed", "holds": False, "delta": d}
    if kind == "≪":
        if d > much:
            return {"verdict": "holds", "holds": True, "delta": d}
        if d > tol:
            return {"verdict": "only '<' (gap below the '≪' threshold)", "holds": False, "delta": d}
        return {"verdict": "does not hold", "holds": False, "delta": d}
    raise ValueError(kind)


def analyse(cfg: dict, vs: dict, results: dict) -> dict:
    best = {}
    for name, v in vs.items():
        lrs = [float(x) for x in v["lrs"]]
        losses = [results[run_id(name, lr)]["final_val_loss"] for lr in lrs]
        b = R.best_lr(lrs, losses)
        b.update(lrs=lrs, losses=losses, base=v["base"], p=float(v["p"]))
        best[name] = b
    spreads = {}
    for name in cfg["noise"]["variants"]:
        if name not in best or best[name]["best_lr"] is None:
            continue
        vals = [best[name]["best_loss"]]
        for seed in cfg["noise"]["seeds"]:
            r = results.get(run_id(name, best[name]["best_lr"], int(seed)))
            if r and r["final_val_loss"] is not None:
                vals.append(r["final_val_loss"])
        if len(vals) > 1:
            spreads[name] = {"losses": vals, "spread": max(vals) - min(vals)}
    noise = max([s["spread"] for s in spreads.values()], default=0.0)
    tol = max(float(cfg["comparison"]["approx_tol"]), 2 * noise)
    much = max(float(cfg["comparison"]["much_less"]), 2 * tol)
    L = {n: best[n]["best_loss"] for n in best}
    checks = {}
    if all(n in L for n in FAMILIES["adam"]):
        trio = [L["Adam"], L["AdamS"], L["AdamQ"]]
        ok = [x for x in trio if x is not None]
        spread = (max(ok) - min(ok)) if len(ok) == 3 else None
        checks["AdamS ≈ Adam ≈ AdamQ"] = (
            {"verdict": "holds" if spread <= tol else "does not hold", "holds": spread <= tol, "delta": spread}
            if spread is not None
            else relation(None, None, "≈", tol, much)
        )
        checks["max(Adam, AdamS, AdamQ) < AdamZ"] = relation(
            max(ok) if len(ok) == 3 else None, L["AdamZ"], "<", tol, much
        )
    if all(n in L for n in FAMILIES["momentum"]):
        checks["Muon (mSGDZ) ≈ mSGDQ"] = relation(L["mSGDZ"], L["mSGDQ"], "≈", tol, much)
        pair = [x for x in (L["mSGDZ"], L["mSGDQ"]) if x is not None]
        checks["max(Muon, mSGDQ) ≪ mSGD"] = relation(max(pair) if len(pair) == 2 else None, L["mSGD"], "≪", tol, much)
    return {"best": best, "noise": spreads, "tol": tol, "much_less": much, "checks": checks}


# ---------------------------------------------------------------------------------------------- plots
def plots(an: dict, results: dict, out: Path) -> list[str]:
    plt = R.plt()
    if plt is None:
        return []
    made = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, base, title in zip(axes, ("adam", "momentum"), ("Adam family", "mSGD family")):
        names = [n for n, b in an["best"].items() if b["base"] == base]
        finite_all = [v for n in names for v in an["best"][n]["losses"] if v is not None]
        if finite_all:
            lo, hi = min(finite_all), min(max(finite_all), min(finite_all) + 2.0)
            top = hi + max(0.02, 0.08 * (hi - lo))
        else:
            top = 1.0
        for name in names:
            b = an["best"][name]
            fin = [(lr, v) for lr, v in zip(b["lrs"], b["losses"]) if v is not None]
            (line,) = ax.semilogx([x for x, _ in fin], [y for _, y in fin], "o-", label=f"{name} (p={b['p']:g})")
            div = [lr for lr, v in zip(b["lrs"], b["losses"]) if v is None]
            if div:
                ax.semilogx(div, [top - 0.02] * len(div), "x", color=line.get_color(), ms=9, mew=2)
        if finite_all:
            ax.set_ylim(lo - max(0.02, 0.05 * (hi - lo)), top)
        ax.set_title(f"{title} (× at the top: diverged)")
        ax.set_xlabel("lr of the matrix (Muon-group) update")
        ax.set_ylabel("final validation loss")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    made.append(R.save_figure(fig, out, "loss_vs_lr.png"))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, b in an["best"].items():
        if b["best_lr"] is None:
            continue
        r = results[run_id(name, b["best_lr"])]
        ax.plot(
            [s for s, _ in r["train_curve"]],
            [v for _, v in r["train_curve"]],
            lw=1.2,
            marker=".",
            ls="-" if b["base"] == "adam" else "--",
            label=f"{name} @ {b['best_lr']:g}",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (10-step mean)")
    ax.set_title("training curves at each variant's best lr")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    made.append(R.save_figure(fig, out, "best_curves.png"))
    return made


# --------------------------------------------------------------------------------------------- report
def report(
    cfg: dict, an: dict, est: dict, command: str, figs: list[str], results: dict, data_info: dict, params: dict | None
) -> str:
    c, t, m = cfg["common"], cfg["train"], cfg["model"]
    L = ["# The spectral family U Σ^p Vᵀ on a tiny GPT-2\n"]
    L.append(
        "Checks the orderings of *Delving into Muon and Beyond* (arXiv 2602.04669; guide `papers.md` §3) at "
        "CPU scale with `hf_muon.Muon(spectral_power=p, update_base=...)`.\n"
    )
    L.append(f"Command:\n\n```\n{command}\n```\n")
    ran = sum(r.get("wall_s", 0) for r in results.values())
    L.append(
        f"Estimated cost of this config ({est['runs']} runs; the p = ½, ¼ Gram iterations count as fp32 model "
        f"work): {R.describe_estimate(est)} on this 2-core machine (slower when other jobs share the cores). "
        f"Training time recorded in the run JSONs: {ran / 60:.1f} min "
        f"({R.describe_environment(R.environment())}).\n"
    )
    L.append("## Setup\n")
    L.append(
        f"- Data: `{data_info['corpus']}`, {data_info['train_tokens']:,} training tokens in blocks of "
        f"{data_info['block_size']}, GPT-2 ids re-indexed to {data_info['vocab_size']} ids "
        f"({data_info['other_token_share_train']:.1%} 'other'); {data_info['val_blocks']} held-out blocks."
    )
    pc = f" ({params['total']:,} params, {params['non_embedding']:,} non-embedding)" if params else ""
    L.append(
        f"- Model: `GPT2LMHeadModel` from a config, n_embd {m['width']}, {m['layers']} layers, {m['heads']} heads, "
        f"tied head, dropout 0{pc}. Fused `c_attn` (QKV) is one matrix (the paper's code can split it)."
    )
    L.append(
        f"- Matrices (Muon groups): `Ψ_p` of the momentum (momentum {c['momentum']}, nesterov {c['nesterov']}) or "
        f"of Adam's `m̂/(√v̂+ε)` (betas {c['betas']}); scale mode `{c['scale_mode']}` for p > 0 and "
        f"`{c['z_scale_mode']}` for p = 0 (√max(1, d_out/d_in), the convention of the paper's code); p = 0 uses "
        f"{c['ns_steps']} {c['coefficients']} NS steps (the paper's code: 15 Keller steps); p = ½, ¼ use "
        "coupled Newton-Schulz square roots (no SVD). Weight decay "
        f"{c['weight_decay']} (the paper: 0)."
    )
    L.append(f"- Everything else (embeddings, head, norms, biases): AdamW, lr {c['adamw_lr']} for every variant.")
    L.append(
        f"- Training: {t['steps']} steps × {t['batch_size']} blocks, warmup {t['warmup_steps']}, linear decay "
        f"over the last {t['decay_ratio']:.0%}, grad clip {t['grad_clip']}, seed {t['seed']}. A run whose "
        "training loss goes non-finite or above 3·ln(vocab) counts as diverged.\n"
    )
    L.append("## Best final validation loss per variant\n")
    rows = []
    overall = min((b["best_loss"] for b in an["best"].values() if b["best_loss"] is not None), default=None)
    for name, b in an["best"].items():
        paper = PAPER.get(name)
        grid = ", ".join(f"{lr:g}: {R.fmt(v) if v is not None else 'div'}" for lr, v in zip(b["lrs"], b["losses"]))
        rows.append(
            [
                f"{name}{' (Muon)' if name == 'mSGDZ' else ''}",
                b["base"],
                f"{b['p']:g}",
                f"{b['best_lr']:g}" if b["best_lr"] else "—",
                R.fmt(b["best_loss"]),
                f"{b['best_loss'] - overall:+.3f}" if b["best_loss"] is not None and overall else "—",
                "yes" if b["interior"] else "**edge**",
                grid,
                f"{paper[0]:g} / {paper[1]:.3f}" if paper else "—",
            ]
        )
    L.append(
        R.markdown_table(
            [
                "variant",
                "base",
                "p",
                "best lr",
                "best val loss",
                "Δ vs best",
                "optimum interior?",
                "lr: loss (div = diverged)",
                "paper best lr / loss",
            ],
            rows,
            "llrrrrcll",
        )
    )
    L.append("")
    if an["noise"]:
        L.append(
            "Seed noise (same config, best lr, other seeds): "
            + "; ".join(
                f"{n}: {', '.join(R.fmt(x) for x in s['losses'])} (spread {s['spread']:.4f})"
                for n, s in an["noise"].items()
            )
            + "."
        )
    L.append(
        f"Tolerance for '≈' and for '<' to count as resolved: **{an['tol']:.3f}** (max of the config's "
        f"{cfg['comparison']['approx_tol']} and twice the largest seed spread); '≪' needs a gap above "
        f"**{an['much_less']:.3f}**.\n"
    )
    L.append("## Do the paper's orderings reproduce?\n")
    L.append(
        "Paper (GPT-2 124M, 100B tokens): AdamS 2.870 ≈ Adam 2.871 ≈ AdamQ 2.872 < AdamZ 2.879; "
        "mSGDQ 2.876 ≈ Muon 2.887 ≪ mSGD 3.092.\n"
    )
    rows = [[k, R.fmt(v["delta"]) if v["delta"] is not None else "—", v["verdict"]] for k, v in an["checks"].items()]
    L.append(R.markdown_table(["relation", "gap (right − left, or spread)", "verdict"], rows, "lrl"))
    L.append("")
    ck = an["checks"]
    adam_ok = all(ck[k]["holds"] for k in ("AdamS ≈ Adam ≈ AdamQ", "max(Adam, AdamS, AdamQ) < AdamZ") if k in ck)
    sgd_ok = all(ck[k]["holds"] for k in ("Muon (mSGDZ) ≈ mSGDQ", "max(Muon, mSGDQ) ≪ mSGD") if k in ck)
    edges = [n for n, b in an["best"].items() if not b["interior"]]
    L.append(f"- **AdamS ≈ Adam ≈ AdamQ < AdamZ: {'reproduces' if adam_ok else 'does not reproduce'} at this scale.**")
    L.append(f"- **Muon ≈ mSGDQ ≪ mSGD: {'reproduces' if sgd_ok else 'does not reproduce'} at this scale.**")
    if edges:
        L.append(
            f"- Optimum at a grid edge for: {', '.join(edges)}; those variants' best losses are upper bounds and "
            "the verdicts that involve them are provisional (widen their lr grids)."
        )
    size = (
        f"a model ~{124e6 / params['total']:,.0f}× smaller than the paper's 124M (total parameters)"
        if params
        else "a model far smaller than the paper's"
    )
    L.append(
        f"- Scale: {t['steps']} steps of {int(t['batch_size']) * int(cfg['data']['block_size'])} tokens on {size}, "
        "one seed per grid point. The paper's gaps within the top group (0.001–0.02 nats) are far below what "
        "this setup resolves, so only large effects (mSGD stabilised by spectral compression, the Adam family's "
        "insensitivity to p) are testable.\n"
    )
    return R.report_text(L, figs)


def main(argv=None) -> Path:
    rc = R.start_recipe(__file__, __doc__, DEFAULTS, argv)
    cfg, data = rc.cfg, rc.data
    vs = variants(cfg)
    est = estimate(cfg, vs, data.vocab_size)
    rc.announce(est["runs"], est)
    base_seed = int(cfg["train"]["seed"])

    def do(name, v, lr, seed=None):
        s = base_seed if seed is None else seed
        rc.run(run_id(name, lr, seed), spec_of(cfg, name, v, lr, s), lambda: execute(cfg, data, name, v, lr, s))

    grid = [(name, v, float(lr)) for name, v in vs.items() for lr in v["lrs"]]
    for name, v, lr in R.progress(grid, desc="spectral_family lr grid"):
        do(name, v, lr)
    pre = analyse(cfg, vs, rc.results)
    noise_runs = [
        (n, int(s))
        for n in cfg["noise"]["variants"]
        if n in vs and pre["best"][n]["best_lr"] is not None
        for s in cfg["noise"]["seeds"]
        if int(s) != base_seed
    ]
    for name, seed in R.progress(noise_runs, desc="spectral_family noise seeds"):
        do(name, vs[name], pre["best"][name]["best_lr"], seed)
    an = analyse(cfg, vs, rc.results)
    figs = plots(an, rc.results, rc.out)
    params = next((r["params"] for r in rc.results.values() if "params" in r), None)
    for k, v in an["checks"].items():
        print(f"{k}: {v['verdict']} (gap {R.fmt(v['delta'])})")
    return rc.finish(
        {"estimate": est, "params": params, "analysis": an, "paper": PAPER},
        report(cfg, an, est, rc.command, figs, rc.results, data.info, params),
    )


if __name__ == "__main__":
    main()
