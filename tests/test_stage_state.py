"""A stage counts as complete only through its stats.json, written last and atomically, and
only for the settings it was made with."""

import json

import pytest

from cst_ray.config.load import load_config
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_text
from cst_ray.stages.common import is_complete, stage_dir, write_stage_stats


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
    with pytest.raises(StageError, match=r"generation.engine.temperature: .* -> 0.5.*delete .*generate"):
        is_complete(_cfg(tmp_path, "generation.engine.temperature=0.5"), "generate")
    # a later stage's settings do not touch an earlier stage
    assert is_complete(_cfg(tmp_path, "train.lr=0.001"), "generate")


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
