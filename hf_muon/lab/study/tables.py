"""The report's numbers: per-cell values by seed, the paired contrasts and the remedy comparison.

Everything here is pure (dicts in, dicts out) so the report wording can be tested on planted numbers.
``values[pair][metric][seed]`` holds one number per finished, scored unit; two forgetting columns are derived
from an SFT model and its base (same seed): its pretraining validation loss minus the base's (higher = forgot more)
and its BLiMP accuracy minus the base's (in points; lower = forgot more). Contrasts are paired by seed
(:mod:`hf_muon.lab.metrics.paired`); an ordering "reproduces" only when the 95 % t interval excludes 0 in the
claimed direction, and a benchmark column whose cells all sit within chance (two binomial standard errors of
the chance rate for the number of questions) is flagged and never counted as reproducing.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from ..metrics.paired import format_ci, paired_contrast, verdict

# (label, task, key, scale, higher is better, chance rate in the same units or None)
COLUMNS = [
    ("MMLU acc", "mmlu", "acc", 100, True, 25.0),
    ("ARC-Easy acc", "arc_easy", "acc", 100, True, 25.0),
    ("ARC-Easy acc_norm", "arc_easy", "acc_norm", 100, True, 25.0),
    ("GSM8K strict-match", "gsm8k", "strict-match", 100, True, 0.0),
    ("GSM8K flexible-extract", "gsm8k", "flexible-extract", 100, True, 0.0),
    ("HumanEval pass@1", "humaneval", "pass@1", 100, True, 0.0),
    ("BLiMP acc", "blimp", "acc", 100, True, 50.0),
    ("BLiMP morphology", "blimp", "acc_by_field.morphology", 100, True, 50.0),
    ("BLiMP syntax", "blimp", "acc_by_field.syntax", 100, True, 50.0),
    ("BLiMP semantics", "blimp", "acc_by_field.semantics", 100, True, 50.0),
    ("BLiMP syntax-semantics", "blimp", "acc_by_field.syntax_semantics", 100, True, 50.0),
    ("SFT test loss", "sft_loss", "loss", 1, False, None),
    ("SFT test token acc", "sft_loss", "acc", 100, True, None),
    ("pretrain val loss", "perplexity", "loss", 1, False, None),
    ("pretrain val ppl", "perplexity", "perplexity", 1, False, None),
]
FORGETTING = "forgetting (Δ pretrain val loss)"
BLIMP_FORGETTING = "BLiMP forgetting (Δ acc)"
FORGETTING_OF = {
    FORGETTING: "pretrain val loss",
    BLIMP_FORGETTING: "BLiMP acc",
}  # derived column -> its source
DIRECTION = {c[0]: c[4] for c in COLUMNS} | {FORGETTING: False, BLIMP_FORGETTING: True}
CHANCE = {c[0]: c[5] for c in COLUMNS}
BLIMP_FIELDS = [c[0] for c in COLUMNS if c[1] == "blimp" and c[0] != "BLiMP acc"]
PRIMARY = ["SFT test loss", "SFT test token acc", FORGETTING, "BLiMP acc", BLIMP_FORGETTING]
# (name, a, b, the claim: which of a or b is better) — the matched-optimizer reading of Moonlight Table 6 and of
# "Optimizer-Model Consistency" (arXiv 2605.06654)
CONTRASTS = [
    ("Muon/Muon vs AdamW/Muon (SFT with Muon: which base)", "muon / muon", "adamw / muon", "a"),
    ("Muon/AdamW vs AdamW/AdamW (SFT with AdamW: which base)", "muon / adamw", "adamw / adamw", "b"),
    ("Muon-SFT vs AdamW-SFT on the AdamW base", "adamw / muon", "adamw / adamw", "b"),
    ("Muon-SFT vs AdamW-SFT on the Muon base", "muon / muon", "muon / adamw", "a"),
]
MAIN_PAIRS = ["adamw / adamw", "adamw / muon", "muon / adamw", "muon / muon"]


def lookup(result: dict, key: str):
    """``result[key]``, or ``result[a][b]`` for a dotted ``key`` ``"a.b"`` (e.g. ``acc_by_field.syntax``)."""
    head, _, rest = key.partition(".")
    value = result.get(head)
    return value.get(rest) if rest and isinstance(value, dict) else (None if rest else value)


def _count(result: dict, key: str) -> int:
    """Questions behind ``key``: a field's own count (``n_by_field``) for a per-field key, else ``n_scored``."""
    head, _, rest = key.partition(".")
    if rest and head.startswith("acc_by_"):
        n = (result.get("n_by_" + head[len("acc_by_") :]) or {}).get(rest)
        if n is not None:
            return int(n)
    return int(result.get("n_scored") or 0)


def collect_values(units: list[dict]) -> tuple[dict, dict]:
    """``(values[pair][metric][seed], counts[metric] = questions scored)`` from scored unit records
    (``{"seed", "pair", "kind", "pretrain", "scores"}``)."""
    values: dict = defaultdict(lambda: defaultdict(dict))
    counts: dict[str, int] = {}
    for u in units:
        for label, task, key, scale, _, _ in COLUMNS:
            v = lookup(u["scores"].get(task, {}), key)
            if v is not None and isinstance(v, (int, float)):
                values[u["pair"]][label][u["seed"]] = float(v) * scale
                counts[label] = _count(u["scores"][task], key)
    for derived, source in FORGETTING_OF.items():
        base = {
            (u["seed"], u["pretrain"]): values[u["pair"]].get(source, {}).get(u["seed"])
            for u in units
            if u["kind"] == "base"
        }
        for u in units:
            own, ref = values[u["pair"]].get(source, {}).get(u["seed"]), base.get((u["seed"], u["pretrain"]))
            if u["kind"] == "sft" and own is not None and ref is not None:
                values[u["pair"]][derived][u["seed"]] = own - ref
    return values, counts


def mean_std(by_seed: dict) -> str:
    v = [x for x in by_seed.values() if math.isfinite(x)]
    if not v:
        return "—"
    return f"{statistics.fmean(v):.3f}" if len(v) == 1 else f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}"


def at_chance(values: dict, pairs: list[str], label: str, counts: dict) -> bool:
    """True when every pair's mean is within chance + 2 binomial SEs (n = questions scored) of ``label``."""
    chance = CHANCE.get(label)
    if chance is None:
        return False
    n = counts.get(label, 0)
    se = 100 * math.sqrt(chance / 100 * (1 - chance / 100) / n) if n else 0.0
    means = [statistics.fmean(values[p][label].values()) for p in pairs if values.get(p, {}).get(label)]
    return bool(means) and max(means) <= chance + 2 * se + 1e-9


def judge(c: dict, label: str, claim: str, chance: bool) -> str:
    """``reproduces`` / ``opposite`` / ``not resolved (CI includes 0)`` / ``n=1, no interval`` / ``at chance``."""
    if chance:
        return "at chance: no signal"
    v = verdict(c, DIRECTION[label])
    if v in ("n=1, no interval", "no paired seeds"):
        return v
    if v == "not resolved":
        return "not resolved (CI includes 0)"
    return "reproduces" if v == f"{claim} better" else "opposite (CI excludes 0)"


def contrasts(values: dict, counts: dict, labels: list[str]) -> list[dict]:
    """One row per (contrast, metric) with the paired difference ``a − b`` and its verdict."""
    rows = []
    for name, a, b, claim in CONTRASTS:
        for label in labels:
            if not values.get(a, {}).get(label) or not values.get(b, {}).get(label):
                continue
            c = paired_contrast(values[a][label], values[b][label])
            rows.append(
                {
                    "contrast": name,
                    "a": a,
                    "b": b,
                    "metric": label,
                    "claim": f"{a if claim == 'a' else b} better",
                    "ci": format_ci(c),
                    **c,
                    "verdict": judge(c, label, claim, at_chance(values, [a, b], label, counts)),
                }
            )
    return rows


def remedy_rows(values: dict, labels: list[str]) -> list[dict]:
    """Each remedy arm (an ``adamw / …`` pair with a variant) against AdamW/AdamW, AdamW/Muon and Muon/Muon,
    and LoRA-Muon against LoRA-AdamW; ``a`` is the remedy."""
    refs = ["adamw / adamw", "adamw / muon", "muon / muon"]
    remedies = [p for p in values if p.startswith("adamw / ") and "(" in p and p != "adamw / adamw (LoRA)"]
    rows = []
    for r in remedies:
        against = refs + (["adamw / adamw (LoRA)"] if r == "adamw / muon (LoRA)" else [])
        for ref in against:
            for label in labels:
                if not values.get(r, {}).get(label) or not values.get(ref, {}).get(label):
                    continue
                c = paired_contrast(values[r][label], values[ref][label])
                v = verdict(c, DIRECTION[label])
                status = {
                    "a better": "better",
                    "b better": "worse",
                    "not resolved": "not distinguishable",
                }.get(v, v)
                rows.append(
                    {
                        "remedy": r,
                        "reference": ref,
                        "metric": label,
                        "ci": format_ci(c),
                        **c,
                        "status": status,
                    }
                )
    return rows


def remedy_statement(rows: list[dict], metric: str = "SFT test loss") -> list[str]:
    """Plain sentences: which remedy brings AdamW/Muon to AdamW/AdamW (or Muon/Muon) level on ``metric``.

    A remedy "reaches" a reference when it is better than AdamW/Muon (interval excludes 0) and not worse than the
    reference (interval includes 0 or it is better)."""
    by = defaultdict(dict)
    for r in rows:
        if r["metric"] == metric:
            by[r["remedy"]][r["reference"]] = r["status"]
    out = []
    for remedy, st in by.items():
        if remedy == "adamw / adamw (LoRA)":
            continue
        vs_mis = st.get("adamw / muon", "—")
        if vs_mis in ("n=1, no interval", "no paired seeds"):
            out.append(f"{remedy}: {vs_mis} — no claim.")
            continue
        reached = [
            ref
            for ref in ("adamw / adamw", "muon / muon")
            if vs_mis == "better" and st.get(ref) in ("better", "not distinguishable")
        ]
        text = (
            f"{remedy}: vs AdamW/Muon {vs_mis}; vs AdamW/AdamW {st.get('adamw / adamw', '—')}; "
            f"vs Muon/Muon {st.get('muon / muon', '—')}"
        )
        out.append(
            text
            + (
                f" → reaches the level of {' and '.join(reached)}."
                if reached
                else " → does not close the mismatch gap by this test."
            )
        )
    return out


def blimp_agreement(rows: list[dict], seeds: list) -> list[str]:
    """A table of each contrast's verdict on the loss columns beside BLiMP, and a plain sentence on whether BLiMP
    reads the same: for each contrast, BLiMP accuracy against SFT test loss and BLiMP forgetting against
    pretraining-loss forgetting (the same verdict, an interval that resolves either way, counts as agreeing)."""
    cols = ["SFT test loss", FORGETTING, "BLiMP acc", BLIMP_FORGETTING]
    by = {(r["contrast"], r["metric"]): r for r in rows}
    names = [c[0] for c in CONTRASTS if any((c[0], m) in by for m in cols)]

    def show(r: dict) -> str:  # the interval, and the verdict where the interval does not already say it
        return r["ci"] if r["verdict"] in r["ci"] else f"{r['verdict']}: {r['ci']}"

    cell = {(n, m): show(by[n, m]) if (n, m) in by else "—" for n in names for m in cols}
    out = ["| contrast | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    out += [f"| {n} | " + " | ".join(cell[n, m] for m in cols) + " |" for n in names]
    if len(seeds) < 2:
        return [*out, "", f"{len(seeds)} seed: no interval, so no agreement is judged."]
    pairs = [("BLiMP acc", "SFT test loss"), (BLIMP_FORGETTING, FORGETTING)]
    same, total, differ = 0, 0, []
    for n in names:
        for b, loss in pairs:
            if (n, b) in by and (n, loss) in by:
                total += 1
                if by[n, b]["verdict"] == by[n, loss]["verdict"]:
                    same += 1
                else:
                    differ.append(f"{n}: {b} {by[n, b]['verdict']}, {loss} {by[n, loss]['verdict']}")
    out += [
        "",
        f"BLiMP reads the same as the loss columns on {same} of {total} contrast pairs"
        + (" (accuracy vs SFT test loss, BLiMP forgetting vs loss forgetting)." if total else "."),
    ]
    out += [f"- differs: {d}" for d in differ]
    return out


def plain_summary(rows: list[dict], seeds: list, chance_cols: list[str]) -> list[str]:
    """The report's plain statement: which claimed orderings reproduce, which are reversed, which are unresolved,
    from the verdicts of ``rows`` (the primary-metric contrasts), and which columns sit at chance."""

    def say(r):
        return f"{r['contrast']} on {r['metric']} ({r['ci']})"

    out = []
    if len(seeds) < 2:
        out.append(f"{len(seeds)} seed: no interval, so no ordering is claimed either way.")
    else:
        groups = defaultdict(list)
        for r in rows:
            groups[r["verdict"]].append(r)
        n = len(rows)
        rep, opp = groups.get("reproduces", []), groups.get("opposite (CI excludes 0)", [])
        out.append(
            f"With {len(seeds)} paired seeds, {len(rep)} of {n} claimed orderings reproduce"
            + (": " + "; ".join(say(r) for r in rep) + "." if rep else ".")
        )
        out.append(
            f"{len(opp)} go the other way with the interval excluding 0"
            + (": " + "; ".join(say(r) for r in opp) + "." if opp else ".")
        )
        rest = n - len(rep) - len(opp)
        if rest:
            out.append(f"The other {rest} are not resolved at this scale (the interval includes 0).")
    if chance_cols:
        out.append(f"At chance in every cell, so silent on the question: {', '.join(chance_cols)}.")
    return out


__all__ = [
    "BLIMP_FIELDS",
    "BLIMP_FORGETTING",
    "COLUMNS",
    "CONTRASTS",
    "DIRECTION",
    "FORGETTING",
    "FORGETTING_OF",
    "MAIN_PAIRS",
    "PRIMARY",
    "at_chance",
    "blimp_agreement",
    "collect_values",
    "lookup",
    "contrasts",
    "judge",
    "mean_std",
    "plain_summary",
    "remedy_rows",
    "remedy_statement",
]
