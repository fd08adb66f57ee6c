"""The classifier judge: MiniLM embeddings + logistic regression on PyRIT's human labels."""

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def trained_judge(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge")
    res = run_cli(["train-judge", "--kind", "classifier", "--output", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads((out / "judge.json").read_text())


def test_training_data_is_counted_and_heldout_beats_the_baselines(trained_judge):
    out, card = trained_judge
    data = card["training_data"]
    kept = sum(data["kept_by_source"].values())
    assert kept == card["train_rows"] + card["heldout_rows"]
    assert data["read"] == kept + sum(data["skipped"].values())  # nothing dropped silently
    assert {s.split("/")[1] for s in data["kept_by_source"]} == {"objective", "harm", "refusal_scorer"}
    h, r = card["heldout"], card["heldout_refusal_judge"]
    assert h["n"] == r["n"] == card["heldout_rows"] > 200
    majority = max(h["share_safe_gold"], 1 - h["share_safe_gold"])
    assert h["accuracy"] > majority + 0.1
    assert h["accuracy"] > r["accuracy"]  # better than refusal patterns on the same held-out rows


def test_weights_are_safetensors_not_pickle(trained_judge):
    out, _ = trained_judge
    from safetensors.numpy import load_file

    t = load_file(str(out / "judge.safetensors"))
    assert t["weight"].shape == (768,) and t["bias"].shape == (1,)
    assert sorted(p.name for p in out.iterdir()) == ["judge.json", "judge.safetensors"]


def test_judge_cli_agrees_with_the_cards_heldout_accuracy(trained_judge, tmp_path):
    """Labelling the held-out rows through `cst-ray judge --labels` reproduces the card's figure."""
    from cst_ray.evaluation.judge_training.classifier_train import is_held_out, load_pyrit_labels

    out, card = trained_judge
    rows, _ = load_pyrit_labels()
    test = [r for r in rows if is_held_out(r, card["heldout_fraction"], card["seed"])]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps({"prompt": r.prompt, "response": r.response, "gold": int(r.safe)}) + "\n"
                         for r in test))
    res = run_cli(["judge", "--judge", "classifier", "--judge-path", str(out), "--input", str(f),
                   "--output", str(tmp_path / "labelled.jsonl"), "--labels", "gold"])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["rows"] == len(test)
    assert summary["agreement"] == pytest.approx(card["heldout"]["accuracy"], abs=1e-3)
    labelled = [json.loads(x) for x in (tmp_path / "labelled.jsonl").read_text().splitlines()]
    assert all(isinstance(x["safe"], bool) and 0.0 <= x["score"] <= 1.0 and x["safe"] == (x["score"] >= 0.5)
               for x in labelled)


def test_missing_judge_folder_is_a_clear_error(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    res = run_cli(["judge", "--judge", "classifier", "--judge-path", str(tmp_path / "nope"), "--input", str(f),
                   "--output", str(tmp_path / "o.jsonl")])
    assert res.returncode == 2 and "train-judge --kind classifier --output" in res.stderr
