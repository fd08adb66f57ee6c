"""Issue 24/33: every figure of RESULTS.md's runs table is rebuilt from the committed artifacts
under results/runs/ (eval.json, the labelled answers, run.json), and the scores in each eval.json
are recomputed from its labelled answers."""

import json
import subprocess
import sys

from conftest import ROOT

from cst_ray.evaluation.metrics import safety_scores, wilson_share


def test_results_table_is_rebuilt_from_the_committed_runs():
    res = subprocess.run([sys.executable, "scripts/runs_table.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout


def test_each_runs_scores_recompute_from_its_labelled_answers():
    runs = [p for p in (ROOT / "results" / "runs").iterdir() if (p / "eval.json").is_file()]
    assert runs
    for run in runs:
        ev = json.loads((run / "eval.json").read_text())
        for model, scores in ev["scores"].items():
            rows = [json.loads(x) for x in (run / f"labelled_{model}.jsonl").read_text().splitlines()]
            held = [r for r in rows if r["variant"] in ("s1", "s0") or r["variant"].startswith("s0_unseen")]
            assert {k: v.as_dict() for k, v in safety_scores(held).items()} == scores, (run.name, model)
            benign = [r["refusal"] for r in rows if r["variant"] == "benign_s1"]
            assert wilson_share(benign).as_dict() == ev["over_refusal"]["scores"][model], (run.name, model)
            unseen = [dict(r, variant=r["variant"].split(":", 1)[1]) for r in rows
                      if r["variant"].startswith("unseen_source:")]
            want = ev["unseen_source"]["scores"][model]
            assert {k: v.as_dict() for k, v in safety_scores(unseen).items()} == want, (run.name, model)
