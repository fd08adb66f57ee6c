"""Checkpoint files a resume reads: no pickle of ours is executed, and a checkpoint from
another worker count or a half-written one is refused with a message that says why."""

import json
import pickle
import random

import pytest
import torch

from cst_ray.training.checkpoint import (
    CKPT_TAG,
    REF_FILE,
    STATE_FILE,
    load_reference_table,
    load_rng_state,
    resumable_state,
    rng_state,
)


class _Payload:
    """Unpickling this calls os.system: a planted code-execution payload."""

    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/cst-ray-pwned-marker",))


def _checkpoint(tmp_path, world=2, shards=2):
    (tmp_path / CKPT_TAG).mkdir(parents=True)
    for r in range(shards):
        (tmp_path / CKPT_TAG / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"x")
    (tmp_path / STATE_FILE).write_text(json.dumps({"step": 3, "world_size": world}))
    return tmp_path


def test_planted_pickle_in_reference_table_is_refused(tmp_path):
    marker = "/tmp/cst-ray-pwned-marker"
    import os

    if os.path.exists(marker):
        os.remove(marker)
    with open(tmp_path / REF_FILE, "wb") as f:
        pickle.dump({"table": _Payload()}, f)
    with pytest.raises(RuntimeError, match="refused, it holds more than a tensor"):
        load_reference_table(tmp_path)
    assert not os.path.exists(marker), "the payload ran"


def test_reference_table_round_trip_and_shape_check(tmp_path):
    table = torch.randn(5, 2)
    torch.save(table, tmp_path / REF_FILE)
    assert torch.equal(load_reference_table(tmp_path), table)
    torch.save(torch.randn(5, 3), tmp_path / REF_FILE)
    with pytest.raises(RuntimeError, match=r"\[pairs, 2\]"):
        load_reference_table(tmp_path)


def test_rng_state_is_json_and_restores_both_generators(tmp_path):
    random.seed(1)
    torch.manual_seed(1)
    (tmp_path / "rng_rank0.json").write_text(json.dumps(rng_state()))
    expected = (random.random(), torch.rand(3))
    random.seed(99)
    torch.manual_seed(99)
    load_rng_state(tmp_path, 0)
    got = (random.random(), torch.rand(3))
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])


def test_resume_refuses_other_worker_count_and_half_written(tmp_path):
    ck = _checkpoint(tmp_path / "a", world=2, shards=2)
    assert resumable_state(ck, 2)["step"] == 3
    with pytest.raises(RuntimeError, match="written by 2 training workers and this run has 1: resume with "
                                           "train.num_workers=2"):
        resumable_state(ck, 1)
    half = _checkpoint(tmp_path / "b", world=2, shards=1)  # one rank's shard missing
    with pytest.raises(RuntimeError, match="incomplete"):
        resumable_state(half, 2)
    (tmp_path / "a" / STATE_FILE).unlink()  # state file written last: missing = half-written
    with pytest.raises(RuntimeError, match="incomplete"):
        resumable_state(ck, 2)


def test_a_run_never_resumes_another_runs_checkpoints(tmp_path):
    """issue 25: the identity beside the checkpoints (train settings, pairs, base model) must
    match, or the run stops before any worker starts, naming what differs."""
    from cst_ray.config.schema import TrainConfig
    from cst_ray.core.errors import StageError
    from cst_ray.training.identity import IDENTITY_FILE, claim_storage, run_identity

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    pairs = [{"id": "1:s1", "prompt": "x", "chosen": "a", "rejected": "b"}]
    folder = str(tmp_path / "ckpt" / "ray_train")
    mine = run_identity(TrainConfig(), pairs, str(model))
    claim_storage(folder, mine)
    (tmp_path / "ckpt" / "ray_train" / "checkpoint_000001").mkdir()
    claim_storage(folder, mine)  # the same run again (a rerun after a crash): resumes
    same_but_kept = run_identity(TrainConfig(keep_checkpoints=5, checkpoint_every=9), pairs, str(model))
    claim_storage(folder, same_but_kept)  # how checkpoints are kept does not change the weights
    with pytest.raises(StageError, match=r"differs in: train settings\); refusing"):
        claim_storage(folder, run_identity(TrainConfig(lr=1e-4), pairs, str(model)))
    with pytest.raises(StageError, match="differs in: pairs"):
        claim_storage(folder, run_identity(TrainConfig(), pairs + pairs, str(model)))
    (model / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(StageError, match="differs in: base model"):
        claim_storage(folder, run_identity(TrainConfig(), pairs, str(model)))
    (tmp_path / "ckpt" / "ray_train" / IDENTITY_FILE).unlink()
    with pytest.raises(StageError, match="without a run identity"):
        claim_storage(folder, mine)


def test_a_torn_metrics_line_is_skipped_by_both_readers(tmp_path, caplog):
    """A crash mid-append leaves part of a line; the resumed run's next line is glued to it.
    read_metrics and the live progress reader skip it and keep every whole line."""
    import logging

    from cst_ray.core.files import append_line
    from cst_ray.core.stats import read_metrics
    from cst_ray.training.progress import TrainingProgress

    path = tmp_path / "metrics.jsonl"
    append_line(path, json.dumps({"step": 1, "loss": 0.69, "time/step_s": 2.0}))
    with open(path, "a") as f:
        f.write('{"step": 2, "lo')  # torn by a crash
    append_line(path, json.dumps({"step": 2, "loss": 0.6, "time/step_s": 2.0}))  # glued to the torn part
    append_line(path, json.dumps({"step": 3, "loss": 0.5, "time/step_s": 4.0}))
    assert [m["step"] for m in read_metrics(path)] == [1, 3]
    with caplog.at_level(logging.INFO, logger="cst_ray.training.progress"):
        prog = TrainingProgress(path, 10, label="train:cst")
        prog._report()
    assert prog._step_s == [2.0, 4.0] and prog._last_step == 3


def test_an_export_replaces_the_old_folder_whole(tmp_path):
    """issue 25: a new export leaves no file of the old one behind (copytree over it did)."""
    from cst_ray.core.storage import replace_dir

    old = tmp_path / "model"
    old.mkdir()
    (old / "model.safetensors").write_text("old weights")
    (old / "adapter_model.safetensors").write_text("a file only the old export had")
    new = tmp_path / "staged"
    new.mkdir()
    (new / "model.safetensors").write_text("new weights")
    replace_dir(str(new), str(old))
    assert sorted(p.name for p in old.iterdir()) == ["model.safetensors"]
    assert (old / "model.safetensors").read_text() == "new weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "staged"]  # nothing left aside
