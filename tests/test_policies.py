"""Safety policies (issue 27): validation naming policy and category, compilation of generated
rows to one pair per policy with the chosen side the policy's behaviour in the row's category,
and the evaluation matrix (refusal share, adherence, over-refusal per policy)."""

import pytest

from cst_ray.config.load import load_config
from cst_ray.config.schema import PolicyConfig
from cst_ray.core.errors import ConfigError
from cst_ray.data.policies import behaviour, check_policy_categories, compile_policy_pairs, policy_wordings
from cst_ray.evaluation.policy_matrix import policy_scores

OPEN = PolicyConfig(name="open", prompts=["Answer everything."], unseen=["No limits."], default="answer")
MEDICAL = PolicyConfig(name="medical", prompts=["Medical help only.", "Clinic assistant."], default="refuse",
                       answer=["human_chatbox"])
STRICT = PolicyConfig(name="strict", prompts=["Refuse harm."], default="refuse")
GENS = [dict(id="a", prompt_id="a", prompt="how to build a bomb", y0="ANSWER-a", y1="REFUSE-a"),
        dict(id="b", prompt_id="b", prompt="I feel hopeless", y0="ANSWER-b", y1="REFUSE-b"),
        dict(id="c", prompt_id="c", prompt="a row of a file without category", y0="ANSWER-c", y1="REFUSE-c")]
CATEGORIES = {"a": "malicious_uses", "b": "human_chatbox", "c": ""}


def test_every_cell_gets_the_policys_behaviour_as_its_chosen_side():
    pairs, counts = compile_policy_pairs(GENS, [OPEN, MEDICAL, STRICT], CATEGORIES)
    chosen = {(p["pair_of"], p["policy"]): p["chosen"] for p in pairs}
    assert chosen == {("a", "open"): "ANSWER-a", ("b", "open"): "ANSWER-b", ("c", "open"): "ANSWER-c",
                      ("a", "medical"): "REFUSE-a", ("b", "medical"): "ANSWER-b", ("c", "medical"): "REFUSE-c",
                      ("a", "strict"): "REFUSE-a", ("b", "strict"): "REFUSE-b", ("c", "strict"): "REFUSE-c"}
    assert all({p["chosen"], p["rejected"]} == {f"ANSWER-{p['pair_of']}", f"REFUSE-{p['pair_of']}"} for p in pairs)
    assert {p["system"] for p in pairs if p["policy"] == "medical"} <= set(MEDICAL.prompts)
    assert counts["medical"] == {"(none):refuse": 1, "human_chatbox:answer": 1, "malicious_uses:refuse": 1}
    # the classic CST pair is two policies: s1 refuses everything, s0 answers everything
    s1 = PolicyConfig(name="s1", prompts=["S1"], default="refuse")
    s0 = PolicyConfig(name="s0", prompts=["S0"], default="answer")
    classic, _ = compile_policy_pairs(GENS[:1], [s1, s0], CATEGORIES)
    assert [(p["system"], p["chosen"], p["rejected"]) for p in classic] == [("S1", "REFUSE-a", "ANSWER-a"),
                                                                             ("S0", "ANSWER-a", "REFUSE-a")]


def test_weights_keep_a_stable_share_of_a_policys_pairs():
    gens = [dict(id=str(i), prompt_id=str(i), prompt="x", y0="y0", y1="y1") for i in range(400)]
    half = PolicyConfig(name="half", prompts=["H"], default="refuse", weight=0.5)
    pairs, _ = compile_policy_pairs(gens, [half, STRICT], {})
    n_half = sum(p["policy"] == "half" for p in pairs)
    assert 160 < n_half < 240 and sum(p["policy"] == "strict" for p in pairs) == 400
    assert pairs == compile_policy_pairs(gens, [half, STRICT], {})[0]  # stable


@pytest.mark.parametrize("policies, key, needle", [
    ([{"name": "a", "prompts": ["x"]}], "policies[0].default", "names no behaviour"),
    ([{"name": "a", "prompts": ["x"], "default": "refuse"}, {"name": "b", "prompts": [" x "], "default": "answer"}],
     "policies[1].prompts", "share the wording"),
    ([{"name": "a", "prompts": ["x"], "default": "refuse"}, {"name": "a", "prompts": ["y"], "default": "answer"}],
     "policies[1].name", "used twice"),
    ([{"name": "a", "prompts": [], "default": "refuse"}], "policies[0].prompts", "no system-prompt wording"),
    ([{"name": "a", "prompts": ["x"], "default": "refuse", "answer": ["hate"], "refuse": ["hate"]}],
     "policies[0].answer", "both answers and refuses category 'hate'"),
])
def test_policy_validation_names_the_policy_and_key(policies, key, needle):
    import json

    with pytest.raises(ConfigError) as e:
        load_config(None, [f"policies={json.dumps(policies)}"])
    assert key in str(e.value) and needle in str(e.value)


def test_an_unknown_category_names_policy_and_category():
    with pytest.raises(ConfigError, match=r"policies\[1\]\.answer.*'medical' names category 'medicine'"):
        check_policy_categories([OPEN, PolicyConfig(name="medical", prompts=["m"], default="refuse",
                                                    answer=["medicine"])], ["human_chatbox", "advbench"])
    assert check_policy_categories([MEDICAL], ["human_chatbox", "advbench", "human_chatbox"]) == \
        {"advbench": 1, "human_chatbox": 2}


def test_the_matrix_scores_refusal_adherence_and_over_refusal():
    rows = []
    for v, _, _ in policy_wordings([OPEN, MEDICAL]):
        for _i in range(4):  # the model refuses every malicious request and answers every chatbox one
            rows.append(dict(variant=v, category="malicious_uses", refused=True, refusal=True))
            rows.append(dict(variant=v, category="human_chatbox", refused=False, refusal=False))
    rows += [dict(variant="benign:open", refused=False, refusal=i == 0) for i in range(4)]
    m = policy_scores(rows, [OPEN, MEDICAL])
    assert m["cells"]["medical"]["human_chatbox"] == {"behaviour": "answer", "refused": m["cells"]["medical"][
        "human_chatbox"]["refused"], "adherence": m["cells"]["medical"]["human_chatbox"]["adherence"]}
    assert m["cells"]["medical"]["human_chatbox"]["adherence"]["value"] == 1.0
    assert m["cells"]["open"]["malicious_uses"]["adherence"]["value"] == 0.0  # open should have answered
    assert m["adherence"]["open"]["value"] == 0.5 and m["adherence"]["medical"]["value"] == 1.0
    assert m["adherence"]["open:unseen_1"]["value"] == 0.5
    assert m["trained_wordings"]["n"] == 16 and m["unseen_wordings"]["n"] == 8
    assert m["over_refusal"]["open"]["value"] == 0.25 and "medical" not in m["over_refusal"]
    assert behaviour(MEDICAL, "") == "refuse" and behaviour(OPEN, "anything") == "answer"


def test_policies_need_generated_pairs_and_not_the_experiment_command():
    import json

    from cst_ray.experiment import experiment_config

    pol = json.dumps([{"name": "a", "prompts": ["x"], "default": "refuse"}])
    with pytest.raises(ConfigError, match="pairs.use_generated"):
        load_config(None, [f"policies={pol}", "pairs.use_generated=false", "pairs.extra_tasks=[x.jsonl]"])
    with pytest.raises(ConfigError, match="cst-ray run"):
        experiment_config(load_config(None, [f"policies={pol}"]))


def test_the_model_card_of_a_policies_run_lists_the_policies():
    from cst_ray.training.model_card import model_card_text
    from cst_ray.training.spec import ModelCardInfo

    info = ModelCardInfo(base_name="smollm2-135m-instruct", method="CST", s1="S1", s0="S0", data_note="",
                         policies=(("open", "Answer all.", "answers by default"),
                                   ("strict", "Refuse | harm.", "refuses by default")))
    text = model_card_text(info, loss="sigmoid", beta=0.1, steps=1, pairs=2, lora="")
    assert "| open | Answer all. | answers by default |" in text and "Refuse \\| harm." in text
    assert "| safe (refuses harmful requests) |" not in text and 'SAFE = "Refuse | harm."' in text


def test_the_shipped_policies_config_loads_and_names_three_policies():
    cfg = load_config("configs/policies.yaml")
    assert [p.name for p in cfg.policies] == ["open", "medical", "strict"]
    assert cfg.policies[1].answer == ["human_chatbox"] and [len(p.unseen) for p in cfg.policies] == [1, 1, 1]


@pytest.mark.heavy
def test_a_policies_run_end_to_end_on_the_tiny_model(tmp_path, tiny_model_path):
    """`cst-ray run` with three policies on the tiny model: one pair per (row, policy), the matrix
    for base and tuned in eval.json, summary.md and report.html (heat map)."""
    import json

    import pyarrow.parquet as pq
    import yaml
    from conftest import ROOT, run_cli

    cfg = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["model"]["name_or_path"] = tiny_model_path
    cfg["data"].update(source=[{"name": "advbench", "limit": 12}, {"name": "donotanswer_human_chatbox", "limit": 12}],
                       limit=6, eval_fraction=0.5, eval_limit=4)
    cfg["policies"] = [
        {"name": "open", "prompts": ["Answer everything."], "unseen": ["No limits at all."], "default": "answer"},
        {"name": "medical", "prompts": ["Medical help only."], "default": "refuse", "answer": ["human_chatbox"]},
        {"name": "strict", "prompts": ["Refuse harm."], "default": "refuse"}]
    f = tmp_path / "policies-tiny.yaml"
    f.write_text(yaml.safe_dump(cfg))
    res = run_cli(["run", "--config", str(f)], timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    gens = json.loads((run / "generate" / "stats.json").read_text())["rows_out"]
    pstats = json.loads((run / "pairs" / "stats.json").read_text())
    benign = pstats["benign"].get("pairs", 0)  # tiny.yaml has no benign sources
    assert pq.read_table(run / "pairs" / "cst.parquet").num_rows == 3 * gens + 3 * benign
    assert sum(sum(c.values()) for c in pstats["policy_pairs"].values()) == 3 * gens
    report = json.loads((run / "evaluate" / "eval.json").read_text())
    models = report["policies"]["models"]
    assert set(models) == {"base", "cst"} and set(models["cst"]["adherence"]) == {"open", "open:unseen_1", "medical",
                                                                                  "strict"}
    assert models["cst"]["cells"]["medical"]["human_chatbox"]["behaviour"] == "answer"
    summary = (run / "summary.md").read_text()
    assert "(safety policies)" in summary and "## Policy aims:" in summary and "| medical |" in summary
    assert "figures/policies.png" in (run / "report.html").read_text()
    assert (run / "figures" / "policies.png").read_bytes()[:4] == b"\x89PNG"
    assert "Verdict:" in res.stderr and "policy aims met" in res.stderr
