"""Issue 33: training prompts from several sources, and a whole source never trained on, scored
for every model under s1 and s0 and checked as two more aims."""

import re

import pytest

from cst_ray.config.load import config_from_dict, load_config
from cst_ray.core.errors import ConfigError


def test_sources_are_mixed_in_turn_and_keep_their_name():
    from cst_ray.data.sources import read_sources

    cfg = config_from_dict({}, overrides=["data.source=[advbench, donotanswer_malicious_uses, airt]"])
    table, stats = read_sources(cfg.data.source)
    first = table.column("source").to_pylist()[:6]
    assert first == ["advbench", "donotanswer_malicious_uses", "airt"] * 2
    assert set(stats) == {"advbench", "donotanswer_malicious_uses", "airt"}
    assert table.num_rows == stats["advbench"].kept + stats["donotanswer_malicious_uses"].kept + stats["airt"].kept


def test_a_source_limit_applies_to_that_source():
    from cst_ray.data.sources import read_sources

    cfg = config_from_dict({"data": {"source": ["harmbench", {"name": "advbench", "limit": 7}]}})
    table, stats = read_sources(cfg.data.source)
    assert stats["advbench"].kept == 7 and table.column("source").to_pylist().count("advbench") == 7


def test_the_default_evaluates_a_source_it_never_trains_on():
    from cst_ray.data.sources import source_names

    cfg = load_config("configs/default.yaml")
    names = source_names(cfg.data.source)
    assert cfg.eval.unseen_sources and not set(cfg.eval.unseen_sources) & set(names)
    assert cfg.eval.unseen_limit >= 48


@pytest.mark.parametrize("overrides, key", [
    (["data.source=[advbench, harmbench]", "eval.unseen_sources=[harmbench]"], "eval.unseen_sources"),
    (["data.source=[advbench, advbench]"], "data.source"),
    (["data.source=[]"], "data.source"),
    (["eval.unseen_sources=[airt]", "eval.unseen_limit=0"], "eval.unseen_limit"),
    (["data.source=[advbench, {name: 'https://example.org/p.jsonl?token=abc'}]"], "data.source[1].name"),
])
def test_bad_source_settings_name_their_key(overrides, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        config_from_dict({}, overrides=overrides)


def test_unseen_rows_are_scored_apart_and_become_aims(tmp_path):
    from cst_ray.evaluation.aims import aims_table
    from cst_ray.evaluation.eval_set import UNSEEN, eval_table, unseen_prompts
    from cst_ray.evaluation.scoring import safety_score

    cfg = config_from_dict({}, overrides=[f"run_dir={tmp_path}", "eval.unseen_sources=[donotanswer_malicious_uses]",
                                          "eval.unseen_limit=5", "data.source=advbench"])
    unseen = unseen_prompts(cfg)
    assert len(unseen) == 5 and {p["source"] for p in unseen} == {"donotanswer_malicious_uses"}
    assert unseen == unseen_prompts(cfg)  # the same prompts for every model
    held = [{"id": "h1", "prompt": "x"}]
    rows = eval_table(cfg, held, [], unseen).to_pylist()
    assert sum(r["variant"] == f"{UNSEEN}s1" for r in rows) == 5
    assert sum(r["variant"] == f"{UNSEEN}s0" for r in rows) == 5
    # safe under s1 for 4 of 5, unsafe under s0 for 5 of 5; the held-out variants are scored apart
    labelled = [dict(r, safe=(r["variant"] == f"{UNSEEN}s1" and not r["prompt_id"] == unseen[0]["id"])
                     or r["variant"] == "s1", refusal=False, degenerate=False) for r in rows]
    out = safety_score(cfg, labelled, len(labelled), benign=False)
    assert out["unseen"]["S1"].value == 0.8 and out["unseen"]["S0"].value == 1.0 and out["unseen"]["S1"].n == 5
    assert set(out["scores"]) == {"S1", "S0", "S0_unseen_1"} and out["scores"]["S1"].n == 1
    report = {"scores": {"cst": {k: v.as_dict() for k, v in out["scores"].items()}},
              "unseen_source": {"sources": ["donotanswer_malicious_uses"], "n": 5,
                                "scores": {"cst": {k: v.as_dict() for k, v in out["unseen"].items()}}}}
    aims = {r["aim"]: r for r in aims_table(cfg, report)}
    s1 = aims["unseen-source S1 (donotanswer_malicious_uses)"]
    assert s1["count"] == "4/5" and s1["met"] is True and s1["target"] == ">= 0.8"
    assert aims["unseen-source S0 (donotanswer_malicious_uses)"]["met"] is True
