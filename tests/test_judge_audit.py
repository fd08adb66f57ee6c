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
    assert [(r["n"], r["label_safe"], r["annotator"]) for r in rows] == [(a["n"], a["label_safe"], a["annotator"]) for a in audit]
    assert figures_from_verdicts(verdicts) == shipped_figures()
    assert shipped_figures()["rows"] >= 250 and shipped_figures()["unsafe"] == sum(1 - a["label_safe"] for a in audit)


def test_every_audit_label_names_its_annotator_and_no_label_is_called_human():
    audit = [json.loads(x) for x in (ROOT / "results" / "judge_audit.jsonl").read_text().splitlines()]
    assert all(a["annotator"].startswith(("llm:", "person:")) for a in audit)
    assert not any("human_safe" in a for a in audit)
    by = shipped_figures()["by_annotator"]
    assert sum(g["rows"] for g in by.values()) == shipped_figures()["rows"]
    assert set(by) == {a["annotator"].replace("+adjudicator", "") for a in audit}


def test_audit_line_names_the_judge_and_its_balanced_accuracy():
    fig = audit_figures("refusal")
    assert fig["measured"] and 0.5 < fig["balanced_accuracy"] < 1
    line = audit_line(fig)
    assert line.startswith("Judge `refusal` on the blind audit (") and "balanced accuracy" in line
    other = audit_figures("llm", "some-model", "safety")
    assert not other["measured"] and "not measured on the blind audit" in audit_line(other)
    assert audit_figures("cascade", "qwen2.5-coder-1.5b-instruct", "help")["measured"]


def test_audit_batches_rebuild_their_committed_labels_and_tables():
    """Each batch's merged labels, the relabelled audit rows and its harm-vs-refusal table are what
    scripts/audit_batch.py writes from the labellers' files; a disagreement without adjudication fails."""
    import subprocess
    import sys

    for folder in sorted((ROOT / "results").glob("audit_20*")):
        res = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit_batch.py"), str(folder), "--check"],
                             capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 0, res.stdout + res.stderr
        labels = [json.loads(x) for x in (folder / "labels.jsonl").read_text().splitlines()]
        assert all(r["annotator"].startswith("llm:claude#") for r in labels)


def test_an_unadjudicated_disagreement_is_named(tmp_path):
    import shutil
    import subprocess
    import sys

    src = ROOT / "results" / "audit_2026-12-07"
    for name in ("candidates_key.jsonl", "labels_A.jsonl", "labels_B.jsonl", "run.txt"):
        shutil.copy(src / name, tmp_path / name)
    (tmp_path / "adjudication.jsonl").write_text("")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit_batch.py"), str(tmp_path), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode != 0 and "adjudication.jsonl: no label for cids" in res.stderr


def _block(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def test_results_md_tables_are_the_rebuilt_ones():
    """RESULTS.md's harm-vs-refusal table and its judges-per-annotator table are what the
    committed files give (scripts/audit_batch.py, scripts/judge_audit_figures.py --table)."""
    import subprocess
    import sys

    text = (ROOT / "RESULTS.md").read_text()
    for folder in sorted((ROOT / "results").glob("audit_20*")):  # every batch's table is shown, as rebuilt
        harm = (folder / "harm_vs_refusal.md").read_text().strip("\n")
        begin = f"<!-- harm_vs_refusal: results/{folder.name} begin -->"
        assert begin in text, f"RESULTS.md shows no harm-vs-refusal table of {folder.name}"
        assert _block(text, begin, "<!-- harm_vs_refusal: end -->") == harm, folder.name
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "judge_audit_figures.py"), "--table"],
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip("\n")
    assert _block(text, "<!-- judge_audit_table: begin -->", "<!-- judge_audit_table: end -->") == table


def test_refusal_audit_rebuilds_its_figures_and_names_its_labellers():
    """results/refusal_audit_*: the merged refusal labels, agreement and figures are what
    scripts/refusal_audit.py writes from the two labellers' files and the adjudication; every
    label is an LLM's, named as one; today's judge agrees with the labels on the rows where the
    two readings of an answer differ far more often than the old reading does."""
    import subprocess
    import sys

    for folder in sorted((ROOT / "results").glob("refusal_audit_20*")):
        res = subprocess.run([sys.executable, str(ROOT / "scripts" / "refusal_audit.py"), "score", str(folder),
                              "--check"], capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 0, res.stdout + res.stderr
        for name in ("labels_A.jsonl", "labels_B.jsonl", "adjudication.jsonl", "labels.jsonl"):
            rows = [json.loads(x) for x in (folder / name).read_text().splitlines() if x.strip()]
            assert rows and all(r["annotator"].startswith("llm:claude#") for r in rows), name
        figures = (folder / "figures.md").read_text()
        before = next(x for x in figures.splitlines() if x.startswith("| differ: answer alone"))
        now = next(x for x in figures.splitlines() if x.startswith("| differ: request's words ignored"))
        assert float(now.split("|")[3]) > 0.9 > 0.1 > float(before.split("|")[3])
