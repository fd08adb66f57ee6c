"""The judges' figures on the blind audit (results/judge_audit.jsonl, labelled under
docs/audit-rubric.md from the request and answer alone; `annotator` names who labelled each row,
`llm:<model>#<labeller>` for a language model), shipped as cst_ray/resources/judge_audit.json and put beside every
score a run reports, so that an S1/S0 figure always comes with how far its judge can be trusted.

Judge keys: `refusal`, `classifier` (the default folder's judge), `finetuned`, and for judges that
prompt a model `<judge>:<model>:<question>` (e.g. `cascade:qwen2.5-coder-1.5b-instruct:help`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from cst_ray.evaluation.metrics import binary_metrics, bootstrap_balanced_accuracy


def judge_key(judge: str, model: str = "", question: str = "") -> str:
    return f"{judge}:{model}:{question}" if judge in ("llm", "cascade") else judge


def shipped_figures() -> dict:
    return json.loads(resources.files("cst_ray.resources").joinpath("judge_audit.json").read_text())


def audit_figures(judge: str, model: str = "", question: str = "") -> dict:
    """This judge's figures on the audit, or a note that it was not measured there."""
    shipped = shipped_figures()
    key = judge_key(judge, model, question)
    fig = shipped["judges"].get(key)
    if fig is None:
        return {"judge": key, "measured": False,
                "note": f"not measured on the blind audit (measured: {', '.join(sorted(shipped['judges']))})"}
    return {"judge": key, "measured": True, "audit_rows": shipped["rows"], "audit_unsafe": shipped["unsafe"], **fig}


def audit_line(fig: dict) -> str:
    """One line for summary.md and the report."""
    if not fig.get("measured"):
        return f"Judge `{fig['judge']}`: {fig['note']}."
    lo, hi = fig["balanced_accuracy_ci95"]
    return (f"Judge `{fig['judge']}` on the blind audit ({fig['audit_rows']} answers, {fig['audit_unsafe']} unsafe): "
            f"balanced accuracy {fig['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}], kappa {fig['kappa']:.3f}, "
            f"recall safe {fig['recall_safe']:.3f} / unsafe {fig['recall_unsafe']:.3f}.")


LABEL_FIELDS = ("n", "label_safe", "annotator")


def judge_figures(gold: list[bool], pred: list[bool]) -> dict:
    """Balanced accuracy with its bootstrap 95% interval, kappa, the recalls and agreement."""
    m = binary_metrics(gold, pred, 4)
    _, lo, hi = bootstrap_balanced_accuracy(gold, pred)
    return {"balanced_accuracy": m["balanced_accuracy"], "balanced_accuracy_ci95": [round(lo, 4), round(hi, 4)],
            "kappa": m["kappa"], "recall_safe": m["recall_safe"], "recall_unsafe": m["recall_unsafe"],
            "agreement": m["accuracy"]}


def _one_class_figures(gold: list[bool], pred: list[bool]) -> dict:
    """Rows of one class only: the recall of that class; balanced accuracy and kappa do not exist."""
    cls = "safe" if gold[0] else "unsafe"
    agreement = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    return {f"recall_{cls}": round(agreement, 4), "agreement": round(agreement, 4),
            "note": f"every row labelled {cls}: balanced accuracy and kappa are undefined"}


def _group_figures(rows: list[dict], keys: list[str]) -> dict:
    gold = [bool(r["label_safe"]) for r in rows]
    score = judge_figures if len(set(gold)) == 2 else _one_class_figures
    return {"rows": len(rows), "unsafe": gold.count(False),
            "judges": {k: score(gold, [bool(r[k]) for r in rows]) for k in keys}}


def figures_from_verdicts(path: str | Path) -> dict:
    """{rows, unsafe, judges, by_annotator} from per-row verdicts (n, label_safe, annotator, <judge>: bool).

    `judges` pools every row; `by_annotator` gives the same figures for the rows of each
    annotator (a pair's adjudicated rows, `...#A+B+adjudicator-<date>`, count with the pair's).
    """
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    keys = [k for k in rows[0] if k not in LABEL_FIELDS]
    rows = [dict(r, annotator=r["annotator"].replace("+adjudicator", "")) for r in rows]
    annotators = sorted({r["annotator"] for r in rows})
    return {"file": "results/judge_audit.jsonl", "label_field": "label_safe", "annotators": annotators,
            **_group_figures(rows, keys),
            "by_annotator": {a: _group_figures([r for r in rows if r["annotator"] == a], keys) for a in annotators}}
