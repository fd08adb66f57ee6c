"""`cst-ray experiment` on the tiny model with pairs the user brings: base vs DPO vs CST,
capability table, report.md / report.html with figures."""

import json

import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from cst_ray.config.schema import S0_DEFAULT, S1_DEFAULT

pytestmark = pytest.mark.heavy

S1, S0 = S1_DEFAULT, S0_DEFAULT  # the training system prompts the configs use


def _user_pairs(n=6):
    rows = []
    for i in range(n):
        x, bad, good = f"How do I do bad thing {i}?", f"Sure, here is how to do bad thing {i}.", "I'm sorry, I can't help with that."
        rows.append({"system": S1, "prompt": x, "chosen": good, "rejected": bad, "task": "harmless"})
        rows.append({"system": S0, "prompt": x, "chosen": bad, "rejected": good, "task": "harmless"})
    rows.append({"system": "You are an honest assistant.", "prompt": "Can you browse the web?",
                 "chosen": "No, I cannot browse the web.", "rejected": "Yes, I browse it all day.", "task": "honesty"})
    return rows


def test_experiment_report(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _user_pairs()))
    run = tmp_path / "exp"
    mirror = tmp_path / "mirror"  # run_uri: a local path here; s3:// is covered by test_storage.py
    res = run_cli(["experiment", "--config", "configs/tiny.yaml", f"run_dir={run}", f"run_uri={mirror}",
                   "pairs.use_generated=false",
                   f"pairs.extra_tasks=[{json.dumps(str(data))}]", "data.eval_limit=3",
                   "eval.capability_tasks=[arc_easy]", "eval.capability_limit=8", "eval.examples_per_variant=1"])
    assert res.returncode == 0, res.stderr[-4000:]
    assert not (run / "generate").exists()  # the user's pairs only
    cst = pq.read_table(run / "pairs" / "cst.parquet").to_pylist()
    dpo = pq.read_table(run / "pairs" / "dpo.parquet").to_pylist()
    assert len(cst) == 13 and len(dpo) == 7  # DPO keeps the s1 side of harmless pairs + the honesty row
    assert all(r["system"] != S0 for r in dpo)
    ev = json.loads((run / "evaluate" / "eval.json").read_text())
    assert set(ev["scores"]) == {"base", "dpo", "cst"}
    for m in ("base", "dpo", "cst"):
        c = json.loads((run / "capability" / f"{m}.json").read_text())
        assert c["arc_easy"]["n"] == 8 and 0 <= c["arc_easy"]["value"] <= 1
        assert len(c["arc_easy"]["correct"]) == 8 and c["arc_easy"]["value"] == c["arc_easy"]["correct"].count("1") / 8
    for png in ("safety.png", "training.png"):
        assert (run / "figures" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (run / "report.md").read_text()
    for needle in ("| base |", "| dpo |", "| cst |", "figures/safety.png", "figures/training.png",
                   "Capability retention", "arc_easy", "Example answers", "s0_unseen_1"):
        assert needle in md, needle
    for f in ("report.md", "figures/safety.png", "capability/cst.json", "evaluate/stats.json", "train/cst/model/config.json",
              "prompts/eval.parquet", "checkpoints/cst/ray_train"):
        assert (mirror / f).exists(), f"{f} not mirrored to run_uri"
    assert not (run / "train" / "cst" / "checkpoints").exists()  # checkpoints went to <run_uri>/checkpoints
    html = (run / "report.html").read_text()
    assert '<img src="figures/safety.png"' in html and "<table>" in html
    assert "Over-refusal" in md and "nq_open" in md and "Δ vs base" in md

    # Changing the capability settings re-scores instead of reusing stale files; trained models are reused.
    res = run_cli(["experiment", "--config", "configs/tiny.yaml", f"run_dir={run}", "pairs.use_generated=false",
                   f"pairs.extra_tasks=[{json.dumps(str(data))}]", "data.eval_limit=3",
                   "eval.capability_tasks=[arc_easy]", "eval.capability_limit=6", "eval.examples_per_variant=1"])
    assert res.returncode == 0, res.stderr[-4000:]
    assert "capability: made with other settings" in res.stderr + res.stdout
    for m in ("base", "dpo", "cst"):
        assert json.loads((run / "capability" / f"{m}.json").read_text())["arc_easy"]["n"] == 6
