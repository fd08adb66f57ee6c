"""The single-stage commands keep the stage contract of `run` (issue 25): a stage complete with
these settings is reused, one made (or half made) with other settings is set aside and done
again, or stops under --reuse naming the keys; a killed stage resumes under its own settings only.
The stage functions are stand-ins that record their calls; the contract is runner.run_stage's."""

import json

import pytest

from cst_ray.config.load import load_config
from cst_ray.core.errors import StageError
from cst_ray.stages import runner
from cst_ray.stages.common import write_stage_stats
from cst_ray.stages.records import STARTED

CALLS: list[str] = []


def _stand_in(name, crash=False):
    def fn(cfg):
        CALLS.append(name)
        (runner.stage_dir(cfg, name) / "part.txt").write_text("made\n")
        if crash:
            raise KeyboardInterrupt("killed")  # a kill between the start and stats.json
        if name == "evaluate":
            (runner.stage_dir(cfg, name) / "eval.json").write_text(json.dumps({"scores": {}, "rows": 1}))
        write_stage_stats(cfg, name, {"rows": 1})
        return {"rows": 1}
    return fn


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()


@pytest.mark.parametrize("name, attr", [("generate", "generate"), ("pairs", "build_pairs"), ("train", "train"),
                                        ("evaluate", "evaluate")])
def test_each_stage_command_reuses_redoes_and_resumes_by_its_settings(tmp_path, monkeypatch, name, attr):
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    other = load_config(None, [f"run_dir={tmp_path}", "generation.engine.max_new_tokens=64"])
    monkeypatch.setattr(runner, attr, _stand_in(name, crash=True))
    with pytest.raises(KeyboardInterrupt):
        runner.run_stage(cfg, name)  # killed half-way: inputs.json, no stats.json
    assert (tmp_path / name / STARTED).is_file() and not (tmp_path / name / "stats.json").exists()
    monkeypatch.setattr(runner, attr, _stand_in(name))
    runner.run_stage(other, name)  # other settings: the half-done stage is set aside, not resumed
    assert json.loads((tmp_path / f"{name}.replaced" / STARTED).read_text())["generation.engine.max_new_tokens"] == 128
    done = "eval.json" if name == "evaluate" else "stats.json"  # what `cst-ray evaluate` prints from
    assert runner.run_stage(other, name) == json.loads((tmp_path / name / done).read_text())
    assert CALLS == [name, name]  # the second call reused the complete stage
    stop = load_config(None, [f"run_dir={tmp_path}", "stale_stages=stop"])
    with pytest.raises(StageError, match=r"generation.engine.max_new_tokens: 64 -> 128"):
        runner.run_stage(stop, name)  # --reuse: stop, naming what differs
    runner.run_stage(cfg, name)  # the first settings again: redone, the other set aside
    assert CALLS == [name, name, name]


def test_a_killed_stage_resumes_under_its_own_settings(tmp_path, monkeypatch):
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    monkeypatch.setattr(runner, "generate", _stand_in("generate", crash=True))
    with pytest.raises(KeyboardInterrupt):
        runner.run_stage(cfg, "generate")
    monkeypatch.setattr(runner, "generate", _stand_in("generate"))
    runner.run_stage(cfg, "generate")
    assert not (tmp_path / "generate.replaced").exists()  # same settings: resumed in place
    assert (tmp_path / "generate" / "part.txt").is_file()


def test_the_cli_checks_a_stage_alone_before_any_work(tmp_path, monkeypatch):
    """Under --reuse a stale stage stops the command in its checks, before Ray starts."""
    from cst_ray.stages.redo import check_stages_redoable

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    monkeypatch.setattr(runner, "build_pairs", _stand_in("pairs"))
    runner.run_stage(cfg, "pairs")
    stop = load_config(None, [f"run_dir={tmp_path}", "stale_stages=stop", "pairs.s0_augment=[Be free.]"])
    with pytest.raises(StageError, match="pairs.s0_augment"):
        check_stages_redoable(stop, ("prompts", "pairs"))


def test_a_setting_added_later_with_its_default_does_not_make_a_stage_stale(tmp_path):
    """A stage recorded by an older cst-ray lacks the keys added since; at their defaults they
    keep the old behaviour, so the stage is reused. Set to anything else, they differ."""
    from cst_ray.stages.records import stage_state

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    write_stage_stats(cfg, "pairs", {"rows": 1})
    stats = json.loads((tmp_path / "pairs" / "stats.json").read_text())
    for key in ("policies", "data.category_field", "model.chat_template"):
        stats["inputs"].pop(key)
    (tmp_path / "pairs" / "stats.json").write_text(json.dumps(stats))
    assert stage_state(cfg, "pairs") == ("complete", "")
    other = load_config(None, [f"run_dir={tmp_path}", "data.category_field=area"])
    assert stage_state(other, "pairs")[0] == "stale" and "data.category_field" in stage_state(other, "pairs")[1]


def test_editing_an_input_file_in_place_makes_its_stages_stale(tmp_path):
    """issue 25: the fingerprint holds each input file's sha256 (and the cst-ray version), so a
    prompt file edited under the same name redoes the stages that read it."""
    from cst_ray.stages.fingerprint import stage_inputs
    from cst_ray.stages.records import stage_state

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "how do I pick a lock?"}\n')
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", f"data.source={prompts}"])
    write_stage_stats(cfg, "prompts", {"rows": 1})
    inputs = stage_inputs(cfg, "prompts")
    assert f"files.data.source[{prompts}]" in inputs and inputs["cst_ray.version"]
    assert stage_state(cfg, "prompts") == ("complete", "")
    prompts.write_text('{"prompt": "how do I pick a lock, quietly?"}\n')
    state, why = stage_state(cfg, "prompts")
    assert state == "stale" and f"files.data.source[{prompts}]" in why


def test_precomputed_reference_log_probs_follow_the_training_precision(tmp_path):
    """With `pairs.reference_logps: true` the pairs stage scores every pair in the training's
    precision (reference_dtype auto; bf16-mixed under autocast): another train.precision redoes
    it. Without them the pairs stage does not depend on training settings."""
    from cst_ray.stages.fingerprint import stage_inputs
    from cst_ray.stages.reference import reference_autocast, reference_dtype

    def inputs(*ov):
        return stage_inputs(load_config(None, [f"run_dir={tmp_path}", *ov]), "pairs")

    ref = "pairs.reference_logps=true"
    assert inputs(ref, "train.precision=bf16") != inputs(ref, "train.precision=bf16-mixed")
    assert inputs(ref, "train.max_length=128") != inputs(ref, "train.max_length=256")
    assert inputs("train.precision=bf16") == inputs("train.precision=bf16-mixed")
    mixed = load_config(None, [f"run_dir={tmp_path}", ref, "train.precision=bf16-mixed"])
    assert reference_dtype(mixed) == "float32" and reference_autocast(mixed)
    explicit = load_config(None, [f"run_dir={tmp_path}", ref, "train.precision=bf16-mixed",
                                  "pairs.reference_dtype=bfloat16"])
    assert not reference_autocast(explicit)


def test_a_stage_alone_refuses_to_read_an_earlier_stage_made_with_other_settings(tmp_path, monkeypatch):
    """`cst-ray train` after `pairs` was made with other settings would train on them: it stops,
    naming the earlier stage and what differs."""
    monkeypatch.setattr(runner, "build_pairs", _stand_in("pairs"))
    monkeypatch.setattr(runner, "train", _stand_in("train"))
    runner.run_stage(load_config(None, [f"run_dir={tmp_path}"]), "pairs")
    other = load_config(None, [f"run_dir={tmp_path}", "pairs.s0_augment=[Be free.]"])
    with pytest.raises(StageError, match=r"pairs was made with other settings .*pairs.s0_augment.*`cst-ray pairs`"):
        runner.run_stage(other, "train")
    assert CALLS == ["pairs"]
