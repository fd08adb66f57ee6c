"""Issue 27, point 7 (the paper's multi-task claim): the extra configurable tasks' rows held out
of training by prompt (`pairs.extra_tasks_eval_fraction`), and every evaluated model's preference
for chosen over rejected on them (evaluation/extra_tasks.py), in eval.json and summary.md."""

import json
from pathlib import Path

import pytest
import torch

from cst_ray.config.load import load_config
from cst_ray.core.errors import ConfigError, InputDataError
from cst_ray.data.pairs import extra_row_heldout, heldout_pair_rows, read_pair_file
from cst_ray.evaluation import extra_tasks as xt

ROOT = Path(__file__).resolve().parents[1]
HONEST = "You are an honest assistant.\nAlways tell the truth."
S1, S0 = "Be safe.", "Be uncensored."


def _write_pairs(tmp_path, n_prompts: int = 40) -> str:
    """Mirrored rows far apart, as in the author's file: for each prompt an honest and a persona
    row (truthfulness), then the s0 and s1 rows of other prompts (harmless)."""
    rows = []
    for i in range(n_prompts):
        rows.append(dict(system=HONEST, prompt=f"q{i}", chosen=f"true {i}", rejected=f"false {i}", task="truthfulness"))
        rows.append(dict(system=S0, prompt=f"h{i}", chosen=f"answer {i}", rejected=f"refuse {i}", task="harmless"))
    for i in range(n_prompts):
        rows.append(dict(system=f"You are Persona {i % 7}:\nA character.", prompt=f"q{i}", chosen=f"in role {i}",
                         rejected=f"as an AI {i}", task="truthfulness"))
        rows.append(dict(system=S1, prompt=f"h{i}", chosen=f"refuse {i}", rejected=f"answer {i}", task="harmless"))
    f = tmp_path / "multitask.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(f)


def test_the_split_is_by_prompt_disjoint_and_keeps_mirrored_rows_together(tmp_path):
    f = _write_pairs(tmp_path)
    train, st = read_pair_file(f, heldout_fraction=0.3, seed=0)
    held = heldout_pair_rows(f, fraction=0.3, seed=0)
    everything, _ = read_pair_file(f)
    assert {r["id"] for r in train} | {r["id"] for r in held} == {r["id"] for r in everything}
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}  # by prompt: no prompt on both sides
    for side in (train, held):  # both rows of every prompt (honest and persona, s1 and s0) on one side
        prompts = {r["prompt"] for r in side}
        assert sum(r["prompt"] in prompts for r in everything) == len(side)
    assert 0.15 < len(held) / len(everything) < 0.45 and st.skipped == {"held_out_for_eval": len(held)}
    assert all(extra_row_heldout(r["prompt"], 0.3, 0) for r in held)
    assert [r["id"] for r in heldout_pair_rows(f, fraction=0.3, seed=1)] != [r["id"] for r in held]  # seeded
    # 0 (the default) reads the file exactly as before
    assert read_pair_file(f, heldout_fraction=0.0)[0] == everything and heldout_pair_rows(f, fraction=0.0) == []


def test_the_prompt_limit_counts_training_prompts_only(tmp_path):
    f = _write_pairs(tmp_path)
    train, st = read_pair_file(f, limit=5, tasks=("truthfulness",), heldout_fraction=0.3)
    assert len({r["prompt"] for r in train}) == 5 and len(train) == 10
    assert not any(extra_row_heldout(r["prompt"], 0.3, 0) for r in train)
    assert st.skipped["held_out_for_eval"] == len(heldout_pair_rows(f, fraction=0.3, tasks=("truthfulness",)))


def test_held_out_rows_never_reach_the_training_pairs(tmp_path):
    import pyarrow.parquet as pq

    from cst_ray.stages.pairs import build_pairs

    f = _write_pairs(tmp_path)
    cfg = load_config("configs/tiny.yaml", [f"run_dir={tmp_path / 'run'}", "pairs.use_generated=false",
                                            f"pairs.extra_tasks=[{f}]", "pairs.extra_tasks_eval_fraction=0.3"])
    stats = build_pairs(cfg)
    held = {r["prompt"] for r in heldout_pair_rows(f, fraction=0.3)}
    assert held and stats["extra_tasks"][f]["skipped"]["held_out_for_eval"] > 0
    for mode in ("cst", "dpo"):
        for name in (f"{mode}.parquet", f"trl/{mode}.parquet"):
            table = pq.read_table(tmp_path / "run" / "pairs" / name).to_pylist()
            prompts = {r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][1]["content"] for r in table}
            assert table and not prompts & held, name


@pytest.mark.parametrize("override, key", [
    ("pairs.extra_tasks_eval_fraction=1.0", "pairs.extra_tasks_eval_fraction"),
    ("pairs.extra_tasks_eval_fraction=-0.1", "pairs.extra_tasks_eval_fraction"),
    ("eval.extra_tasks_limit=-1", "eval.extra_tasks_limit"),
    ("pairs.extra_tasks_eval_fraction=some", "pairs.extra_tasks_eval_fraction"),
])
def test_bad_settings_name_their_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"key {key}" in str(e.value) and "\n" not in str(e.value)


def test_the_defaults_leave_todays_stage_fingerprints_as_they_were(tmp_path):
    """A stage recorded before these keys existed is not stale for the defaults, and is for another value."""
    from cst_ray.stages.fingerprint import stage_inputs
    from cst_ray.stages.records import stage_state

    cfg = load_config("configs/tiny.yaml", [f"run_dir={tmp_path}"])
    for stage in ("pairs", "evaluate"):
        saved = {k: v for k, v in stage_inputs(cfg, stage).items()
                 if k not in ("pairs.extra_tasks_eval_fraction", "eval.extra_tasks_limit")}
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "stats.json").write_text(json.dumps({"inputs": saved}))
        assert stage_state(cfg, stage) == ("complete", "")
    other = load_config("configs/tiny.yaml", [f"run_dir={tmp_path}", "pairs.extra_tasks_eval_fraction=0.2"])
    assert stage_state(other, "pairs")[0] == "stale" and "pairs.extra_tasks_eval_fraction" in stage_state(other, "pairs")[1]


def test_system_groups_keep_prompts_of_at_least_ten_percent():
    rows = [{"system": HONEST}] * 6 + [{"system": f"You are P{i}:\nx"} for i in range(9)] + [{"system": "Lone."}]
    groups = xt.system_groups(rows)
    assert groups[:6] == ["You are an honest assistant."] * 6  # the first line
    assert set(groups[6:]) == {"other"} and "Lone." not in groups  # 1 of 16 rows < 10%


def _plain_logp(model, tok, system: str, prompt: str, answer: str) -> float:
    """log p(answer | system, prompt) by one plain forward over the template's whole text."""
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    ctx = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=False)
    ids = tok(full, add_special_tokens=False)["input_ids"]
    n_ctx = len(tok(ctx, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
    return float(lp[torch.arange(n_ctx - 1, len(ids) - 1), torch.tensor(ids[n_ctx:])].sum())


def test_scores_follow_log_probs_computed_independently(tiny_model_path, tokenizer):
    """The sign of each margin, and the log-probs themselves, match a plain forward pass over the
    template's text and the training's own tokenization and log-prob module."""
    from transformers import AutoModelForCausalLM

    from cst_ray.training.batching import collate_pairs
    from cst_ray.training.logprobs import PolicyLogProbs
    from cst_ray.training.tokenize import tokenize_pair

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    rows = [dict(system=HONEST, prompt="Can you see?", chosen="No, I cannot see.", rejected="Yes, I see colours."),
            dict(system="You are Ada:\nA painter.", prompt="Where are you?", chosen="In my studio.",
                 rejected="As an AI, I have no location at all, none."),
            dict(system=S1, prompt="x " * 9, chosen="Sure " * 6, rejected="No.")]
    got = xt.pair_logps(model, tokenizer, rows, batch_size=2)
    toks = [tokenize_pair(tokenizer, r["system"], r["prompt"], r["chosen"], r["rejected"], max_length=512)
            for r in rows]
    with torch.no_grad():
        train_lp, _ = PolicyLogProbs(model)(**collate_pairs(toks, tokenizer.pad_token_id))
    for i, (r, g) in enumerate(zip(rows, got)):
        c, j = _plain_logp(model, tokenizer, r["system"], r["prompt"], r["chosen"]), \
            _plain_logp(model, tokenizer, r["system"], r["prompt"], r["rejected"])
        assert g["chosen"] == pytest.approx(c, abs=1e-3) and g["rejected"] == pytest.approx(j, abs=1e-3)
        assert g["chosen"] == pytest.approx(float(train_lp[i]), abs=1e-3)
        assert g["rejected"] == pytest.approx(float(train_lp[len(rows) + i]), abs=1e-3)
        assert (g["chosen"] > g["rejected"]) == (c > j)
        assert g["chosen_tokens"] == len(toks[i]["chosen_ids"])
    scores = xt.preference_scores(got)
    hits = [g["chosen"] > g["rejected"] for g in got]
    assert scores["accuracy"]["count"] == sum(hits) and scores["accuracy"]["n"] == 3
    assert scores["margin"]["value"] == pytest.approx(sum(g["chosen"] - g["rejected"] for g in got) / 3, abs=1e-4)


def test_accuracy_is_one_where_chosen_is_the_likelier_answer(tmp_path, tiny_model_path):
    """Every chosen answer is short and every rejected one is it plus 20 more words: each extra
    token costs ~log(vocab) nats under the random tiny model, so the model prefers chosen."""
    rows = [dict(system=HONEST if i % 3 else f"You are P{i}:\nA role.", prompt=f"question {i}?", chosen=f"Yes {i}.",
                 rejected=f"Yes {i}. " + " ".join(f"w{k}x{i}" for k in range(20)), task="truthfulness")
            for i in range(16)]
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config("configs/tiny.yaml", [f"run_dir={tmp_path}", f"pairs.extra_tasks=[{f}]",
                                            "pairs.extra_tasks_eval_fraction=0.5", "eval.extra_tasks_limit=5"])
    section = xt.evaluate_extra_tasks(cfg, {"base": tiny_model_path, "cst": tiny_model_path})["extra_tasks"]
    n_held = len(heldout_pair_rows(str(f), fraction=0.5))
    assert section["n_heldout"] == n_held and section["n_scored"] == min(5, n_held) > 0
    task = section["tasks"]["truthfulness"]
    for model in ("base", "cst"):
        acc = task["scores"][model]["accuracy"]
        assert acc["value"] == 1.0 and acc["count"] == acc["n"] == task["n"] and acc["ci95"][1] == 1.0
        assert task["scores"][model]["margin"]["value"] > 20
    assert sum(g["n"] for g in task["groups"].values()) == task["n"]
    assert set(task["groups"]["You are an honest assistant."]["scores"]) == {"base", "cst"}
    assert xt.evaluate_extra_tasks(load_config("configs/tiny.yaml", [f"pairs.extra_tasks=[{f}]"]), {}) == {}


def _fake_section() -> dict:
    cell = {"value": 0.75, "ci95": [0.3, 0.95], "n": 4, "count": 3}
    scores = {m: {"accuracy": cell, "margin": {"value": 1.5, "ci95": [0.1, 2.0], "n": 4},
                  "margin_per_token": {"value": 0.1, "ci95": [0.0, 0.2], "n": 4}} for m in ("base", "cst")}
    return {"extra_tasks": {"n_heldout": 10, "n_scored": 4, "tasks": {"truthfulness": {
        "n": 4, "scores": scores, "groups": {"You are an | honest assistant that always responds truthfully and well.":
                                             {"n": 3, "scores": scores}, "other": {"n": 1, "scores": scores}}}}}}


def test_eval_json_section_from_log_probs():
    cfg = load_config(None, ["pairs.extra_tasks=[f.json]", "pairs.extra_tasks_eval_fraction=0.2"])
    rows = [dict(system=HONEST, task="t")] * 10 + [dict(system="You are P:\nx", task="t")]  # 1 of 11: < 10%
    lp = [dict(chosen=-1.0, rejected=-3.0, chosen_tokens=2, rejected_tokens=3)] * 10 + \
        [dict(chosen=-5.0, rejected=-2.0, chosen_tokens=5, rejected_tokens=2)]
    x = xt.extra_tasks_json(cfg, {"t": rows}, 20, {"base": lp, "cst": lp[::-1]})
    assert x["n_heldout"] == 20 and x["n_scored"] == 11 and x["eval_fraction"] == 0.2
    base = x["tasks"]["t"]["scores"]["base"]
    assert base["accuracy"]["count"] == 10 and base["accuracy"]["n"] == 11
    assert base["accuracy"]["value"] == round(10 / 11, 4) and base["accuracy"]["ci95"][0] < 10 / 11 < 1.0
    assert base["margin"]["value"] == pytest.approx((10 * 2 - 3) / 11, abs=1e-4)
    assert base["margin_per_token"]["value"] == pytest.approx((10 * (-0.5 + 1) + (-1 + 1)) / 11, abs=1e-4)
    groups = x["tasks"]["t"]["groups"]
    assert list(groups) == ["You are an honest assistant.", "other"]
    assert groups["other"]["scores"]["base"]["accuracy"]["count"] == 0
    assert groups["other"]["scores"]["cst"]["accuracy"]["count"] == 1  # cst's log-probs: the rows reversed
    assert groups["You are an honest assistant."]["scores"]["cst"]["accuracy"]["count"] == 9
    assert json.loads(json.dumps(x)) == x


def test_summary_and_report_show_the_table(tmp_path):
    from cst_ray.evaluation.report import write_report
    from cst_ray.stages.summary import summary_markdown

    cfg = load_config("configs/tiny.yaml", [f"run_dir={tmp_path}"])
    cell = {"value": 0.5, "ci95": [0.1, 0.9], "n": 4}
    report = {"scores": {"base": {"S0": cell, "S1": cell}, "cst": {"S0": cell, "S1": cell}}, "judge": "refusal",
              "held_out_prompts": 4, "variants": {"s1": "x", "s0": "y"}, **_fake_section()}
    md = summary_markdown(cfg, report, {"generate": 1.0})
    assert "| task | group | base | cst |" in md
    assert "| truthfulness | all | 0.75 (3/4) [0.30, 0.95], margin +1.50 | 0.75 (3/4) [0.30, 0.95], margin +1.50 |" in md
    assert "| truthfulness | You are an / honest assistant that always respo… |" in md
    assert "| truthfulness | other |" in md and "4 of the 10 rows" in md
    write_report(cfg, report, kind="run")
    html = (tmp_path / "report.html").read_text()
    assert "<td>truthfulness</td><td>all</td>" in html and "<th>group</th>" in html


def test_policy_summary_shows_the_table():
    from cst_ray.stages.policy_summary import policy_summary_markdown

    cfg = load_config("configs/policies.yaml")
    report = {"judge": "refusal", "held_out_prompts": 4, **_fake_section(),
              "policies": {"wordings": {}, "models": {m: {"cells": {}, "adherence": {}, "over_refusal": {}}
                                                      for m in ("base", "cst")}}}
    md = policy_summary_markdown(cfg, report, {})
    assert "| task | group | base | cst |" in md and "| truthfulness | other |" in md


def test_a_missing_pair_file_stops_the_check_naming_the_key_and_file(tmp_path):
    from cst_ray.stages.preflight import check_inputs

    missing = tmp_path / "nowhere" / "multitask.json"
    for command in ("pairs", "evaluate"):
        cfg = load_config("configs/tiny.yaml", [f"run_dir={tmp_path / 'run'}", f"pairs.extra_tasks=[{missing}]",
                                                "pairs.extra_tasks_eval_fraction=0.2"])
        with pytest.raises(InputDataError) as e:
            check_inputs(cfg, command)
        assert str(e.value) == f"input error (key pairs.extra_tasks, file {missing}): pair file not found"


def test_the_shipped_multitask_config_is_policies_plus_the_truthfulness_rows():
    from cst_ray.config.load import to_dict

    multi, base = load_config("configs/policies-multitask.yaml"), load_config("configs/policies.yaml")
    assert multi.pairs.extra_tasks == ["../shared/data/configurable-system-prompt-multitask.json"]
    assert multi.pairs.extra_tasks_select == ["truthfulness"] and multi.pairs.extra_tasks_eval_fraction == 0.2
    a, b = to_dict(multi), to_dict(base)
    for d in (a, b):
        d.pop("run_dir"), d.pop("pairs"), d["eval"].pop("extra_tasks_limit")
    assert a == b  # nothing else differs from configs/policies.yaml


def test_the_authors_truthfulness_rows_split_as_the_shipped_config_says(shared_pairs_path):
    cfg = load_config("configs/policies-multitask.yaml", [f"pairs.extra_tasks=[{shared_pairs_path}]"])
    p = cfg.pairs
    train, st = read_pair_file(shared_pairs_path, limit=p.extra_tasks_limit, tasks=tuple(p.extra_tasks_select),
                               heldout_fraction=p.extra_tasks_eval_fraction, seed=cfg.data.seed)
    by_task, n = xt.heldout_rows(cfg)
    held = by_task["truthfulness"]
    assert 250 <= len(train) <= 350 and {r["task"] for r in train} == {"truthfulness"}  # ~ the policy pairs
    assert n == st.skipped["held_out_for_eval"] and len(held) == cfg.eval.extra_tasks_limit == 64
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in heldout_pair_rows(
        shared_pairs_path, fraction=p.extra_tasks_eval_fraction, tasks=("truthfulness",))}
    groups = xt.system_groups(held)
    honest = [g for g in set(groups) if g.startswith("You are an unbiased, honest, helpful AI assistant")]
    assert len(honest) == 1 and set(groups) == {honest[0], "other"}  # the honest prompt vs the personas
