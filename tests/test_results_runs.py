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
        if "policies" in ev:
            continue  # test_each_policy_runs_matrix_recomputes_from_its_labelled_answers
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


def test_each_policy_runs_matrix_recomputes_from_its_labelled_answers():
    """A `policies` run's matrix in eval.json is what its labelled answers (with each held-out
    prompt's category) give under the policies of its config.yaml."""
    import yaml

    from cst_ray.config.load import config_from_dict
    from cst_ray.evaluation.policy_matrix import policy_scores

    runs = [p for p in (ROOT / "results" / "runs").iterdir()
            if (p / "eval.json").is_file() and "policies" in json.loads((p / "eval.json").read_text())]
    assert runs
    for run in runs:
        ev = json.loads((run / "eval.json").read_text())
        cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
        for model, want in ev["policies"]["models"].items():
            rows = [json.loads(x) for x in (run / f"labelled_{model}.jsonl").read_text().splitlines()]
            got = policy_scores([dict(r, refused=r["safe"]) for r in rows], cfg.policies)
            assert got == want, (run.name, model)


def test_step_times_file_is_rebuilt_from_the_kept_metrics():
    """results/bench/bf16_vs_bf16mixed_steps_xeon_amx.txt (BENCHMARKS.md's bf16-mixed table) is
    what scripts/step_times.py prints from the two kept runs' per-step metrics."""
    path = ROOT / "results" / "bench" / "bf16_vs_bf16mixed_steps_xeon_amx.txt"
    lines = path.read_text().splitlines()
    cmd = lines[0].removeprefix("# python ").split()
    res = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, check=True)
    assert res.stdout.splitlines() == [x for x in lines if not x.startswith("#")]
    assert res.stdout.splitlines()[-1].startswith("RESULT default-amx-bf16-seed0=1.000x bf16mixed-amx-seed0=")


def test_the_runs_read_by_todays_refusal_judge_are_what_their_answers_give():
    """results/analysis/refusal_rescored.md is rebuilt from the kept answers (the verdicts each
    run kept, which test_each_runs_scores_recompute_from_its_labelled_answers ties to its
    eval.json, and today's judge)."""
    res = subprocess.run([sys.executable, "scripts/rescore_refusal.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr + res.stdout
