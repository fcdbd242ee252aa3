"""BLiMP (Warstadt et al. 2020, TACL): 67 paradigms × 1,000 English minimal pairs, as lm-evaluation-harness 0.4.13
``blimp`` (group ``tasks/blimp/_blimp.yaml`` v2.0 over the 67 ``blimp_<paradigm>`` tasks of ``_template_yaml`` v1.0).

Data: ``nyu-mll/blimp``, one config per paradigm, split ``train`` (lm-eval's ``validation_split: train``), schema
``{sentence_good, sentence_bad, field, linguistics_term, UID, pairID, ...}``; mirrored as
``benchmarks/blimp/<paradigm>.jsonl`` (all 1,000 pairs of all 67 paradigms).

Protocol (lm-eval YAML keys in parentheses): ``output_type: multiple_choice`` with an empty prompt
(``doc_to_text: ""``), the two choices ``[sentence_good, sentence_bad]`` (``doc_to_choice``), gold index 0
(``doc_to_target: 0``), 0-shot. Each choice is the continuation ``" " + sentence`` (``target_delimiter: " "``) of
an empty context, so each sentence is scored on its own, conditioned on exactly one prefix token (BOS, else EOS:
GPT-2's ``<|endoftext|>``; lm-eval ``TemplateLM.loglikelihood`` for ``context == ""``). That holds whatever the
BOS setting, so BLiMP takes no ``add_bos``. A pair is right when the grammatical sentence has the higher summed
log-likelihood; a tie counts as right (``numpy.argmax`` picks index 0).

Metrics: ``acc_by_paradigm[p]`` = lm-eval's ``blimp_<p>`` ``acc`` (mean over the pair items); ``acc`` = the group
aggregate exactly as lm-eval computes it (``aggregate_metric_list: acc, mean, weight_by_size: False``: the plain
mean of the paradigm accuracies, in the group's paradigm order); ``acc_by_field`` (hf_muon extra) = the same
unweighted mean over the paradigms of each linguistic ``field`` (morphology, syntax, semantics, syntax_semantics;
the one paradigm whose rows say ``syntax/semantics``, ``principle_A_case_2``, counts as ``syntax_semantics``).
``limit`` applies per paradigm (the first N pairs, as lm-eval's ``--limit`` on each ``blimp_<p>`` task);
``paradigms`` selects a subset (default: all 67). Chance is 50 %.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..metrics import mc_predict
from .harness import protocol
from .loglik import loglikelihood
from .sources import HubSpec, MalformedRow, load_rows, need_str, task_result

#: the 67 paradigms (``nyu-mll/blimp`` config names), in the order of lm-eval's ``blimp`` group
PARADIGMS = (
    "adjunct_island",
    "anaphor_gender_agreement",
    "anaphor_number_agreement",
    "animate_subject_passive",
    "animate_subject_trans",
    "causative",
    "complex_NP_island",
    "coordinate_structure_constraint_complex_left_branch",
    "coordinate_structure_constraint_object_extraction",
    "determiner_noun_agreement_1",
    "determiner_noun_agreement_2",
    "determiner_noun_agreement_irregular_1",
    "determiner_noun_agreement_irregular_2",
    "determiner_noun_agreement_with_adj_2",
    "determiner_noun_agreement_with_adj_irregular_1",
    "determiner_noun_agreement_with_adj_irregular_2",
    "determiner_noun_agreement_with_adjective_1",
    "distractor_agreement_relational_noun",
    "distractor_agreement_relative_clause",
    "drop_argument",
    "ellipsis_n_bar_1",
    "ellipsis_n_bar_2",
    "existential_there_object_raising",
    "existential_there_quantifiers_1",
    "existential_there_quantifiers_2",
    "existential_there_subject_raising",
    "expletive_it_object_raising",
    "inchoative",
    "intransitive",
    "irregular_past_participle_adjectives",
    "irregular_past_participle_verbs",
    "irregular_plural_subject_verb_agreement_1",
    "irregular_plural_subject_verb_agreement_2",
    "left_branch_island_echo_question",
    "left_branch_island_simple_question",
    "matrix_question_npi_licensor_present",
    "npi_present_1",
    "npi_present_2",
    "only_npi_licensor_present",
    "only_npi_scope",
    "passive_1",
    "passive_2",
    "principle_A_c_command",
    "principle_A_case_1",
    "principle_A_case_2",
    "principle_A_domain_1",
    "principle_A_domain_2",
    "principle_A_domain_3",
    "principle_A_reconstruction",
    "regular_plural_subject_verb_agreement_1",
    "regular_plural_subject_verb_agreement_2",
    "sentential_negation_npi_licensor_present",
    "sentential_negation_npi_scope",
    "sentential_subject_island",
    "superlative_quantifiers_1",
    "superlative_quantifiers_2",
    "tough_vs_raising_1",
    "tough_vs_raising_2",
    "transitive",
    "wh_island",
    "wh_questions_object_gap",
    "wh_questions_subject_gap",
    "wh_questions_subject_gap_long_distance",
    "wh_vs_that_no_gap",
    "wh_vs_that_no_gap_long_distance",
    "wh_vs_that_with_gap",
    "wh_vs_that_with_gap_long_distance",
)
FIELDS = ("morphology", "syntax", "semantics", "syntax_semantics")
FIELD_ALIASES = {"syntax/semantics": "syntax_semantics"}  # principle_A_case_2's rows spell it this way
CHANCE = 0.5


def file_for(paradigm: str) -> str:
    return f"benchmarks/blimp/{paradigm}.jsonl"


def hub_for(paradigm: str) -> HubSpec:
    return HubSpec("nyu-mll/blimp", paradigm, "train")


def check_paradigms(paradigms) -> list[str]:
    """The selected paradigms in group order (``None``: all 67); an unknown name is an error listing the valid."""
    if paradigms is None:
        return list(PARADIGMS)
    if isinstance(paradigms, str):
        paradigms = [p.strip() for p in paradigms.split(",") if p.strip()]
    unknown = [p for p in paradigms if p not in PARADIGMS]
    if unknown or not paradigms:
        raise ValueError(f"blimp: unknown paradigm(s) {unknown or '(none given)'}; valid: {', '.join(PARADIGMS)}")
    return [p for p in PARADIGMS if p in set(paradigms)]


def parse_row(row: Any) -> dict[str, Any]:
    """Validate one Hub-schema row: two non-empty sentences and a known ``field``. A few pairs of the real data have
    two identical sentences (e.g. 2 in ``passive_1``, 5 in ``principle_A_case_2``); lm-eval scores them (a tie,
    so right) and so does this."""
    good, bad = need_str(row, "sentence_good"), need_str(row, "sentence_bad")
    field = FIELD_ALIASES.get(need_str(row, "field"), row["field"])
    if field not in FIELDS:
        raise MalformedRow(f"field {row['field']!r} is not one of {FIELDS}")
    return {"good": good, "bad": bad, "field": field, "pair_id": row.get("pairID", row.get("pair_id"))}


def load(data_dir=None, limit: int | None = None, paradigms=None, parse=parse_row):
    """``({paradigm: rows}, [LoadReport per paradigm])``; ``limit`` = the first N valid rows of each paradigm."""
    by_paradigm, reports = {}, []
    for p in check_paradigms(paradigms):
        rows, report = load_rows(f"blimp_{p}", parse, data_dir=data_dir, rel_path=file_for(p), hub=hub_for(p))
        by_paradigm[p] = rows if limit is None else rows[:limit]
        reports.append(report)
    return by_paradigm, reports


def paradigm_field(rows: list[dict[str, Any]]) -> str | None:
    """The field most of a paradigm's rows name (they all agree in the data)."""
    fields = Counter(r["field"] for r in rows)
    return fields.most_common(1)[0][0] if fields else None


def aggregate(
    acc_by_paradigm: dict[str, float], field_of: dict[str, str | None], n_by_paradigm: dict[str, int]
) -> dict[str, Any]:
    """``acc`` (lm-eval's unweighted group mean, same arithmetic and order), ``acc_by_field``, ``n_by_field``."""
    accs = list(acc_by_paradigm.values())
    out: dict[str, Any] = {"acc": sum([a * 1 for a in accs]) / len(accs) if accs else 0.0}
    by_field: dict[str, list[float]] = {}
    n_field: dict[str, int] = {}
    for p, a in acc_by_paradigm.items():
        f = field_of.get(p)
        if f is not None:
            by_field.setdefault(f, []).append(a)
            n_field[f] = n_field.get(f, 0) + n_by_paradigm.get(p, 0)
    out["acc_by_field"] = {f: sum(by_field[f]) / len(by_field[f]) for f in FIELDS if f in by_field}
    out["acc_by_paradigm"] = dict(acc_by_paradigm)
    out["n_by_field"] = {f: n_field[f] for f in FIELDS if f in n_field}
    return out


def evaluate_blimp(
    model,
    tokenizer,
    *,
    data_dir=None,
    limit: int | None = None,
    paradigms=None,
    batch_size: int = 8,
    max_length: int | None = None,
    accelerator=None,
    progress: bool = True,
    log_samples: bool = False,
) -> dict[str, Any]:
    """BLiMP ``acc`` (lm-eval's group score), ``acc_by_paradigm``, ``acc_by_field`` + the common keys."""
    by_paradigm, reports = load(data_dir, limit, paradigms)
    requests, owners = [], []
    for p, rows in by_paradigm.items():
        for j, ex in enumerate(rows):
            requests += [("", " " + ex["good"]), ("", " " + ex["bad"])]
            owners.append((p, j))
    results = loglikelihood(
        model,
        tokenizer,
        requests,
        batch_size=batch_size,
        max_length=max_length,
        accelerator=accelerator,
        progress=progress,
        desc="blimp",
    )
    lls = [[results[2 * k].logprob, results[2 * k + 1].logprob] for k in range(len(owners))]
    hits: dict[str, list[float]] = {p: [] for p in by_paradigm}
    for (p, _), ll in zip(owners, lls):
        hits[p].append(1.0 if mc_predict(ll) == 0 else 0.0)
    acc_by_paradigm = {p: sum(h) / len(h) for p, h in hits.items() if h}
    field_of = {p: paradigm_field(rows) for p, rows in by_paradigm.items()}
    metrics = aggregate(acc_by_paradigm, field_of, {p: len(rows) for p, rows in by_paradigm.items()})
    samples = None
    if log_samples:
        samples = [
            {
                "paradigm": p,
                "pair_id": by_paradigm[p][j]["pair_id"],
                "field": by_paradigm[p][j]["field"],
                "sentence_good": by_paradigm[p][j]["good"],
                "sentence_bad": by_paradigm[p][j]["bad"],
                "loglikelihoods": ll,
                "gold": 0,
                "pred": mc_predict(ll),
            }
            for (p, j), ll in zip(owners, lls)
        ]
    config = {
        "num_fewshot": 0,
        "limit_per_paradigm": limit,
        "paradigms": len(by_paradigm),
        "prefix_token": "bos, else eos (empty context)",
    }
    out = task_result(metrics, n_scored=len(owners), reports=reports, config=config, samples=samples)
    out.update(protocol("blimp"))
    return out


__all__ = [
    "CHANCE",
    "FIELDS",
    "PARADIGMS",
    "aggregate",
    "check_paradigms",
    "evaluate_blimp",
    "file_for",
    "hub_for",
    "load",
    "paradigm_field",
    "parse_row",
]
