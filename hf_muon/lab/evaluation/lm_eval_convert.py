"""lm-eval ``simple_evaluate`` output -> hf_muon's native result layout, one task at a time (the results half of
:mod:`.lm_eval_backend`): lm-eval's own metric values as they are, per-item samples in the native task's shape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

#: statuses of the HumanEval programs run by ``lm_eval_backend.code_eval_pass_at_k`` during one task
EXEC_LOG: list[str] = []


def _by_doc(samples: Sequence[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for s in samples:
        out[int(s["doc_id"])].append(s)
    return dict(sorted(out.items()))


def _lls(sample: dict) -> list[float]:
    return [float(r[0][0]) for r in sample["resps"]]


def _mc_items(samples: Sequence[dict]) -> list[dict]:
    items = []
    for doc_id, group in _by_doc(samples).items():
        s = group[0]
        items.append(
            {
                "doc_id": doc_id,
                "doc": s["doc"],
                "prompt": s["arguments"][0][0],
                "loglikelihoods": _lls(s),
                "gold": int(s["target"]),
                "acc": float(s["acc"]),
                **({"acc_norm": float(s["acc_norm"])} if "acc_norm" in s else {}),
            }
        )
    return items


def _convert_blimp(out: dict, config: dict, log_samples: bool) -> dict[str, Any]:
    """BLiMP: lm-eval's group ``acc`` and per-paradigm ``acc`` as they are; fields grouped as the native task does."""
    from ..metrics import mc_predict
    from .blimp import aggregate

    samples, results = out.get("samples") or {}, out["results"]
    acc_by_paradigm = {p: float(results[f"blimp_{p}"]["acc,none"]) for p in config["sizes"]}
    metrics = aggregate(acc_by_paradigm, config["fields"], config["sizes"])
    metrics["acc"] = float(results["blimp"]["acc,none"])  # lm-eval's own group aggregate
    recs = []
    for p in config["sizes"]:
        for it in _mc_items(samples.get(f"blimp_{p}", [])):
            doc = it["doc"]
            recs.append(
                {
                    "paradigm": p,
                    "pair_id": doc.get("pairID", doc.get("pair_id")),
                    "field": config["fields"][p],
                    "sentence_good": doc["sentence_good"],
                    "sentence_bad": doc["sentence_bad"],
                    "loglikelihoods": it["loglikelihoods"],
                    "gold": it["gold"],
                    "pred": mc_predict(it["loglikelihoods"]),
                }
            )
    return {"metrics": metrics, "n": len(recs), "samples": recs if log_samples else None}


def convert(task: str, names: list[str], out: dict, log_samples: bool, config: dict | None = None) -> dict[str, Any]:
    """Native-layout metrics + samples of one task from an lm-eval ``simple_evaluate`` output."""
    from ..metrics import mc_predict

    if task == "blimp":
        return _convert_blimp(out, config or {}, log_samples)
    samples = out.get("samples") or {}
    if task == "mmlu":
        by_subject, rows = {}, []
        for name in names:
            items = _mc_items(samples.get(name, []))
            subject = name[len("mmlu_") :]
            by_subject[subject] = sum(it["acc"] for it in items) / len(items) if items else 0.0
            rows += [dict(it, subject=subject) for it in items]
        metrics = {
            "acc": sum(r["acc"] for r in rows) / len(rows) if rows else 0.0,
            "acc_macro": sum(by_subject.values()) / len(by_subject) if by_subject else 0.0,
            "acc_by_subject": dict(sorted(by_subject.items())),
        }
        rows.sort(key=lambda r: (r["subject"], r["doc_id"]))
        recs = [
            {
                "subject": r["subject"],
                "prompt": r["prompt"],
                "loglikelihoods": r["loglikelihoods"],
                "gold": r["gold"],
                "pred": mc_predict(r["loglikelihoods"]),
            }
            for r in rows
        ]
        return {"metrics": metrics, "n": len(rows), "samples": recs if log_samples else None}
    res = out["results"][names[0]]
    if task in ("arc_easy", "arc_challenge"):
        items = _mc_items(samples.get(names[0], []))
        metrics = {"acc": float(res["acc,none"]), "acc_norm": float(res["acc_norm,none"])}
        recs = None
        if log_samples:
            recs = []
            for it in items:
                choices = it["doc"]["choices"]["text"]
                lens = [float(len(c)) for c in choices]
                recs.append(
                    {
                        "id": it["doc"].get("id"),
                        "prompt": it["prompt"],
                        "choices": choices,
                        "loglikelihoods": it["loglikelihoods"],
                        "gold": it["gold"],
                        "pred": mc_predict(it["loglikelihoods"]),
                        "pred_norm": mc_predict(it["loglikelihoods"], lens),
                    }
                )
        return {"metrics": metrics, "n": len(items), "samples": recs}
    if task == "gsm8k":
        from ..metrics import extract_answer, extract_reference, gsm8k_match

        docs = _by_doc(samples.get("gsm8k", []))
        metrics = {
            "strict-match": float(res["exact_match,strict-match"]),
            "flexible-extract": float(res["exact_match,flexible-extract"]),
        }
        recs = []
        for doc_id, group in docs.items():
            gen = group[0]["resps"][0][0]
            per = {s["filter"]: s for s in group}
            recs.append(
                {
                    "doc_id": doc_id,
                    "question": group[0]["doc"]["question"],
                    "prompt": group[0]["arguments"][0][0],
                    "generation": gen,
                    "filtered": {
                        f: per[f]["filtered_resps"][0]
                        if isinstance(per[f]["filtered_resps"], list)
                        else per[f]["filtered_resps"]
                        for f in per
                    },
                    "extracted": extract_answer(gen),
                    "reference": extract_reference(group[0]["target"]),
                    **{f: float(per[f]["exact_match"]) for f in per},
                    "numeric_match": float(gsm8k_match(gen, group[0]["target"])),
                }
            )
        metrics["numeric_match"] = sum(r["numeric_match"] for r in recs) / len(recs) if recs else 0.0
        return {"metrics": metrics, "n": len(recs), "samples": recs if log_samples else None}
    if task == "humaneval":
        from collections import Counter

        docs = _by_doc(samples.get("humaneval", []))
        metrics = {"pass@1": float(res["pass@1,create_test"]), "status_counts": dict(Counter(EXEC_LOG))}
        recs = [{"task_id": g[0]["doc"]["task_id"], "completions": list(g[0]["resps"][0])} for g in docs.values()]
        return {"metrics": metrics, "n": len(docs), "samples": recs if log_samples else None}
    raise ValueError(task)


__all__ = ["EXEC_LOG", "convert"]
