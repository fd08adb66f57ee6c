"""A stage counts as complete only through its stats.json, written last and atomically, and
only for the settings it was made with."""

import contextlib
import json
import time

import pytest

from cst_ray.config.load import load_config
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_text
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.stages.records import mark_started, stage_state
from cst_ray.stages.redo import is_complete


def _cfg(run, *overrides):
    return load_config("configs/tiny.yaml", [f"run_dir={run}", *overrides])


def test_changed_setting_is_named_not_reused(tmp_path):
    cfg = _cfg(tmp_path)
    assert not is_complete(cfg, "generate")
    write_stage_stats(cfg, "generate", {"rows_out": 3})
    assert is_complete(cfg, "generate")
    assert json.loads((stage_dir(cfg, "generate") / "stats.json").read_text())["rows_out"] == 3
    # how it runs (actor pool) may change; what it makes (the model) may not
    assert is_complete(_cfg(tmp_path, "generation.pool.max_actors=1"), "generate")
    # --reuse (stale_stages=stop): the run stops, naming what differs, and nothing is moved
    with pytest.raises(StageError, match=r"generation.engine.temperature: .* -> 0.5.*--reuse"):
        is_complete(_cfg(tmp_path, "generation.engine.temperature=0.5", "stale_stages=stop"), "generate")
    assert is_complete(cfg, "generate")
    # a later stage's settings do not touch an earlier stage
    assert is_complete(_cfg(tmp_path, "train.lr=0.001"), "generate")


def test_a_stage_made_with_other_settings_is_set_aside_and_redone(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    write_stage_stats(cfg, "generate", {"rows_out": 3})
    changed = _cfg(tmp_path, "generation.engine.temperature=0.5")
    with caplog.at_level("WARNING", logger="cst_ray"):
        assert not is_complete(changed, "generate")  # the default: redo
    aside = tmp_path / "generate.replaced"
    assert json.loads((aside / "stats.json").read_text())["rows_out"] == 3  # kept, not deleted
    assert not stage_dir(cfg, "generate").exists()
    assert any("generation.engine.temperature" in r.getMessage() and "generate.replaced" in r.getMessage()
               for r in caplog.records)
    write_stage_stats(changed, "generate", {"rows_out": 4})
    assert is_complete(changed, "generate")


def test_training_with_outside_checkpoints_is_not_redone_silently(tmp_path):
    ckpt = f"train.storage_path={tmp_path / 'ckpt'}"
    write_stage_stats(_cfg(tmp_path, ckpt), "train", {"steps": 1})
    with pytest.raises(StageError, match=r"checkpoints under train.storage_path .* would be resumed"):
        is_complete(_cfg(tmp_path, ckpt, "train.lr=0.5"), "train")
    assert (tmp_path / "train" / "stats.json").is_file()


def test_a_mirrored_stage_is_not_redone_behind_its_mirror(tmp_path):
    mirror = f"run_uri={tmp_path / 'mirror'}"
    write_stage_stats(_cfg(tmp_path, mirror), "pairs", {"cst_pairs": 2})
    with pytest.raises(StageError, match=r"run_uri .* mirrors it"):
        is_complete(_cfg(tmp_path, mirror, "pairs.s0_augment=[x]"), "pairs")


def test_a_half_done_stage_is_not_resumed_with_other_settings(tmp_path):
    cfg = _cfg(tmp_path)
    mark_started(cfg, "generate")  # killed before its stats.json
    (stage_dir(cfg, "generate") / "generations").mkdir()
    assert stage_state(cfg, "generate") == ("absent", "")  # same settings: resumed
    changed = _cfg(tmp_path, "generation.engine.temperature=0.5")
    state, why = stage_state(changed, "generate")
    assert state == "stale" and "generation.engine.temperature" in why
    assert not is_complete(changed, "generate")
    assert (tmp_path / "generate.replaced" / "generations").is_dir()


def test_preflight_stops_before_any_work_on_a_stage_it_may_not_redo(tmp_path):
    from cst_ray.stages.preflight import check_inputs

    cfg = _cfg(tmp_path)
    write_stage_stats(cfg, "prompts", {"rows": 1})
    changed = _cfg(tmp_path, "data.limit=3", "stale_stages=stop")
    with pytest.raises(StageError, match=r"prompts was made with other settings \(data.limit: .* -> 3\)"):
        check_inputs(changed, "run")
    assert (tmp_path / "prompts" / "stats.json").is_file()  # read only: nothing moved
    assert check_inputs(_cfg(tmp_path, "data.limit=3"), "check")["stages_to_redo"] == ["prompts"]
    assert (tmp_path / "prompts" / "stats.json").is_file()


def test_summary_names_the_reused_stages():
    from cst_ray.stages.summary import summary_markdown

    cfg = load_config("configs/tiny.yaml", [])
    cell = {"value": 0.5, "ci95": [0.1, 0.9], "n": 4}
    report = {"scores": {"base": {"S0": cell, "S1": cell}}, "judge": "refusal", "held_out_prompts": 4,
              "variants": {"s1": "x", "s0": "y"}}
    md = summary_markdown(cfg, report, {"generate": 0.0, "train": 12.0}, ["generate"])
    assert "| generate | reused |" in md and "| train | 12.0 |" in md
    assert "Reused from an earlier run in this folder, made with the same settings: generate." in md


def test_unreadable_stats_is_an_error_naming_the_file(tmp_path):
    cfg = _cfg(tmp_path)
    d = stage_dir(cfg, "pairs")
    d.mkdir(parents=True)
    (d / "stats.json").write_text('{"cst_pairs": 4')
    with pytest.raises(StageError, match=r"pairs/stats.json: not readable JSON"):
        is_complete(cfg, "pairs")


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "stats.json"
    atomic_write_text(target, "old")


    with pytest.raises(TypeError):
        atomic_write_text(target, None)  # fails inside the write
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]  # no temporary left behind


def test_actor_pool_accounts_for_every_id():
    from cst_ray.dataio.actor_map import _account

    _account("generate", {"a", "b"}, {"a", "b"})
    with pytest.raises(StageError, match=r"2 ids sent to the actor pool, 1 never came back \(first: \['b'\]\)"):
        _account("generate", {"a", "b"}, {"a"})
    with pytest.raises(StageError, match=r"1 came back unasked \(first: \['z'\]\)"):
        _account("generate", {"a", "b"}, {"a", "b", "z"})


@contextlib.contextmanager
def _progress_lines():
    """The messages the training progress logger emits inside the block."""
    import logging

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = logging.getLogger("cst_ray.training.progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_training_progress_line_reads_metrics_as_they_grow(tmp_path):
    from cst_ray.training.progress import TrainingProgress, progress_line

    m = {"step": 5, "loss": 0.6, "rewards/margins": 0.2, "rewards/accuracies": 0.75, "tokens_per_s": 140.0}
    assert progress_line(m, 10, 10.0) == "[train] step 5/10  loss 0.6000  margin 0.200  acc 0.75  140 tok/s  ETA 50s"
    path = tmp_path / "metrics.jsonl"
    with _progress_lines() as records, TrainingProgress(path, 10, interval_s=0.05):
        path.write_text(json.dumps(dict(m, step=1)) + "\n")
        time.sleep(0.3)
        with open(path, "a") as f:
            f.write(json.dumps(dict(m, step=2)) + "\n" + '{"step": 3')  # a line still being written
        time.sleep(0.3)
    steps = [m.split()[2] for m in records if m.startswith("[train]")]
    assert steps == ["1/10", "2/10"], steps


def test_training_eta_counts_training_steps_only(tmp_path):
    """Issue 28: a slow start (workers, model load, reference pass) before step 1 must not enter
    the ETA: it comes from the steps' own times (time/step_s), not from the time since fit()."""
    from cst_ray.training.progress import TrainingProgress

    path = tmp_path / "metrics.jsonl"
    with _progress_lines() as records, TrainingProgress(path, 100, interval_s=0.05):
        time.sleep(0.5)  # the start-up: 0.5 s before the first step's line, whose step took 2 s
        path.write_text(json.dumps({"step": 1, "loss": 0.69, "time/reference_pass_s": 300.0,
                                    "time/step_s": 2.0}) + "\n")
        time.sleep(0.3)
        with open(path, "a") as f:
            f.write(json.dumps({"step": 2, "loss": 0.68, "time/step_s": 4.0}) + "\n")
        time.sleep(0.3)
    etas = [m.split("ETA ")[1] for m in records if m.startswith("[train]")]
    assert etas == ["198s", "294s"], etas  # 99 x 2 s, then 98 x the mean 3 s


def test_an_experiments_aims_are_judged_on_cst_not_on_the_dpo_baseline():
    from cst_ray.evaluation.aims import aims_table

    cfg = load_config("configs/tiny.yaml", ["train.methods=[dpo,cst]"])

    def cell(v):
        return {"value": v, "ci95": [0.0, 1.0], "n": 4}

    scores = {"base": {"S1": cell(0.1), "S0": cell(0.9)}, "dpo": {"S1": cell(1.0), "S0": cell(0.0)},
              "cst": {"S1": cell(0.9), "S0": cell(0.85)}}
    rows = {r["aim"]: r for r in aims_table(cfg, {"scores": scores})}
    assert rows["S0 (training wording)"]["tuned"] == 0.85 and rows["S0 (training wording)"]["met"]
    assert rows["S1"]["base"] == 0.1


def test_aims_print_the_count_beside_the_share_so_rounding_never_contradicts_the_verdict(tmp_path):
    """Issue 33: 5 of 48 refused is 0.104, over the 0.10 aim, though it rounds to 0.10."""
    from cst_ray.evaluation.aims import aim_line, aims_table
    from cst_ray.stages.summary import summary_markdown

    cfg = _cfg(tmp_path)
    cell = {"value": 45 / 48, "ci95": [0.83, 0.98], "n": 48}
    report = {"scores": {"base": {"S1": cell, "S0": cell}, "cst": {"S1": cell, "S0": cell}}, "judge": "refusal",
              "held_out_prompts": 48, "variants": {"s1": "x", "s0": "y"},
              "over_refusal": {"scores": {"cst": {"value": 5 / 48, "ci95": [0.05, 0.22], "n": 48},
                                          "base": {"value": 1 / 48, "ci95": [0.0, 0.11], "n": 48}}}}
    rows = {r["aim"]: r for r in aims_table(cfg, report)}
    over = rows["over-refusal"]
    assert not over["met"] and over["count"] == "5/48"
    assert aim_line(over) == "aim over-refusal <= 0.1: 0.104 (5/48), base 0.021 (1/48) -> NOT met"
    md = summary_markdown(cfg, report, {"generate": 1.0})
    assert "| over-refusal | <= 0.1 | 0.104 (5/48) | 0.021 (1/48) | no |" in md
    assert "Machine: " in md and "Precision: generation" in md


def test_summary_splits_each_stage_into_its_parts(tmp_path):
    """Issue 28: generate's y0 / critique / revision / benign, training's reference pass, steps
    and the rest, evaluate's answers per model, from the stages' own stats and metrics."""
    from cst_ray.stages.stage_times import stage_time_rows

    cfg = _cfg(tmp_path)
    (tmp_path / "generate").mkdir()
    (tmp_path / "generate" / "stats.json").write_text(json.dumps(
        {"phase_s": {"y0": 50.0, "critique": 20.0, "revision": 30.0}, "benign": {"stage_wall_s": 40.0}}))
    (tmp_path / "train" / "cst").mkdir(parents=True)
    (tmp_path / "train" / "stats.json").write_text(json.dumps({"cst": {"wall_s": 100.0}}))
    (tmp_path / "train" / "cst" / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "time/reference_pass_s": 10.0, "time/step_s": 30.0}) + "\n"
        + json.dumps({"step": 2, "time/step_s": 40.0}) + "\n")
    (tmp_path / "train" / "cst" / "export.json").write_text(json.dumps({"export_s": 5.0}))
    rows = dict(stage_time_rows(cfg, {"generate": 141.0, "train": 100.0}))
    assert rows["generate"] == "141.0" and rows["&nbsp;&nbsp;critique (chain)"] == "20.0"
    assert rows["&nbsp;&nbsp;benign answers"] == "40.0"
    assert rows["&nbsp;&nbsp;cst: reference pass"] == "10.0"
    assert rows["&nbsp;&nbsp;cst: 2 training steps"] == "70.0"
    assert rows["&nbsp;&nbsp;cst: export"] == "5.0"
    assert rows["&nbsp;&nbsp;cst: workers' start, model load"] == "15.0"


def test_the_capability_stage_is_reused_with_its_settings_and_redone_without(tmp_path, monkeypatch):
    """issue 26: the experiment's capability scores are a stage like the others (stats.json with
    the settings they depend on), not a cache of their own."""
    from cst_ray.config.load import config_from_dict
    from cst_ray.stages import capability as stage

    scored = []
    monkeypatch.setattr(stage, "load_tasks", lambda tasks, limit, seed: {"items": limit})
    monkeypatch.setattr(stage, "capability_scores", lambda path, items, seed, samples: scored.append(path) or
                        {"arc_easy": {"value": 0.5, "n": items["items"], "correct": "10"}})
    models = {"base": "/m/base", "cst": "/m/cst"}

    def run(*overrides):
        cfg = config_from_dict({}, overrides=[f"run_dir={tmp_path}", "eval.capability_tasks=[arc_easy]", *overrides])
        return stage.capability(cfg, models)

    first = run("eval.capability_limit=8")
    assert scored == ["/m/base", "/m/cst"] and (tmp_path / "capability" / "stats.json").is_file()
    assert first["cst"]["arc_easy"]["delta_vs_base"]["value"] == 0.0
    assert run("eval.capability_limit=8")["base"]["arc_easy"]["n"] == 8 and len(scored) == 2  # reused
    assert run("eval.capability_limit=6")["base"]["arc_easy"]["n"] == 6 and len(scored) == 4  # redone
    assert (tmp_path / "capability.replaced").is_dir()
    run("eval.capability_limit=6", "train.lr=1e-4")  # other models: scored again
    assert len(scored) == 6
