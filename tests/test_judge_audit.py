"""The judges' audit figures shipped with cst-ray are the ones the committed per-row verdicts
give against the committed blind labels, and every run reports them beside its scores."""

import json
from pathlib import Path

from cst_ray.evaluation.audit import audit_figures, audit_line, figures_from_verdicts, shipped_figures

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_figures_recompute_from_the_committed_verdicts():
    verdicts = ROOT / "results" / "judge_audit_verdicts.jsonl"
    audit = [json.loads(x) for x in (ROOT / "results" / "judge_audit.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in verdicts.read_text().splitlines()]
    assert [(r["n"], r["human_safe"]) for r in rows] == [(a["n"], a["human_safe"]) for a in audit]
    assert figures_from_verdicts(verdicts) == shipped_figures()
    assert shipped_figures()["rows"] >= 250 and shipped_figures()["unsafe"] == sum(1 - a["human_safe"] for a in audit)


def test_audit_line_names_the_judge_and_its_balanced_accuracy():
    fig = audit_figures("refusal")
    assert fig["measured"] and 0.5 < fig["balanced_accuracy"] < 1
    line = audit_line(fig)
    assert line.startswith("Judge `refusal` on the blind audit (") and "balanced accuracy" in line
    other = audit_figures("llm", "some-model", "safety")
    assert not other["measured"] and "not measured on the blind audit" in audit_line(other)
    assert audit_figures("cascade", "qwen2.5-coder-1.5b-instruct", "help")["measured"]
