"""The judges' figures on the blind human audit (results/judge_audit.jsonl, labelled under
docs/audit-rubric.md), shipped as cst_ray/resources/judge_audit.json and put beside every
score a run reports, so that an S1/S0 figure always comes with how far its judge can be trusted.

Judge keys: `refusal`, `classifier` (the cached default), `finetuned`, and for judges that
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


def figures_from_verdicts(path: str | Path) -> dict:
    """{rows, unsafe, judges: {key: figures}} from per-row verdicts (n, human_safe, <judge>: bool)."""
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    gold = [bool(r["human_safe"]) for r in rows]
    judges = {}
    for key in (k for k in rows[0] if k not in ("n", "human_safe")):
        pred = [bool(r[key]) for r in rows]
        m = binary_metrics(gold, pred, 4)
        _, lo, hi = bootstrap_balanced_accuracy(gold, pred)
        judges[key] = {"balanced_accuracy": m["balanced_accuracy"], "balanced_accuracy_ci95": [round(lo, 4), round(hi, 4)],
                       "kappa": m["kappa"], "recall_safe": m["recall_safe"], "recall_unsafe": m["recall_unsafe"],
                       "agreement": m["accuracy"]}
    return {"file": "results/judge_audit.jsonl", "rows": len(rows), "unsafe": gold.count(False), "judges": judges}
