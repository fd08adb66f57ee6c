"""Killed at random points, a stage never leaves a file that reads as complete while it is not,
and a re-run gives the same set of ids: every output is written to a temporary name and renamed
(core/files.py), and stats.json, which marks a stage complete, is written last."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, run_cli

pytestmark = pytest.mark.heavy

ARGS = ["--config", "configs/tiny.yaml", "data.limit=24", "data.eval_limit=2", "generation.pool.batch_size=4",
        "generation.rows_per_shard=2", "generation.engine.max_new_tokens=8",
        "generation.critique.critique_max_new_tokens=8"]


def _ids(folder: Path) -> list[str]:
    return [i for f in sorted(folder.glob("part-*.parquet"))
            for i in pq.read_table(f, columns=["prompt_id"]).column(0).to_pylist()]


def _check_nothing_partial(run: Path) -> None:
    """Every file under its final name is whole; a stats.json means the stage's outputs are all there."""
    for f in run.rglob("*.parquet"):
        pq.read_table(f)  # raises on a truncated file
    for f in run.rglob("stats.json"):
        json.loads(f.read_text())
    if (run / "prompts" / "stats.json").is_file():
        assert pq.read_table(run / "prompts" / "train.parquet").num_rows == 24
    if (run / "generate" / "stats.json").is_file():
        gen, rej = run / "generate" / "generations", run / "generate" / "rejected_rows"
        assert set(_ids(gen)) | set(_ids(rej)) == _expected(run)


def _expected(run: Path) -> set[str]:
    return set(pq.read_table(run / "prompts" / "train.parquet").column("id").to_pylist())


def test_generate_killed_at_ten_random_points(tmp_path):
    """Ten kills at seeded random times (Ray start-up, engine start, generation, shard writes);
    each re-run resumes from what the killed one left. A run that finishes before its kill
    time starts the stage over, so that every kill lands on a stage at work whatever the
    machine's speed."""
    rng = random.Random(1234)
    run = tmp_path / "run"
    args = [*ARGS, f"run_dir={run}"]
    kills, finished = [], 0
    while len(kills) < 10:
        assert finished < 15, f"runs kept finishing before their kill time: {kills}"
        delay = rng.uniform(1.0, 15.0)
        proc = subprocess.Popen([sys.executable, "-m", "cst_ray.cli", "generate", *args], cwd=ROOT,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            finished += 1
            _check_nothing_partial(run)
            shutil.rmtree(run / "generate")  # done: start the stage over for the next kill
            continue
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append(round(delay, 1))
        time.sleep(0.5)
        _check_nothing_partial(run)
    print("killed after (s):", kills, "runs that finished first:", finished)
    res = run_cli(["generate", *args])
    assert res.returncode == 0, res.stderr[-3000:]
    _check_nothing_partial(run)
    kept, rejected = _ids(run / "generate" / "generations"), _ids(run / "generate" / "rejected_rows")
    assert set(kept) | set(rejected) == _expected(run)
    rows = [r for f in sorted((run / "generate" / "generations").glob("part-*.parquet"))
            for r in pq.read_table(f, columns=["id"]).column(0).to_pylist()]
    assert len(rows) == len(set(rows)), "a row was written twice"
