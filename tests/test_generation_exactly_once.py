"""Exactly-once generation: a crashed actor or a killed driver loses and duplicates nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, run_cli

pytestmark = pytest.mark.heavy

BASE = ["--config", "configs/tiny.yaml", "data.limit=24", "data.eval_limit=2", "generation.pool.batch_size=4",
        "generation.rows_per_shard=4", "generation.engine.max_new_tokens=4",
        "generation.critique.critique_max_new_tokens=4", "generation.progress_interval_s=1"]


def _ids(folder: Path) -> list[str]:
    return [i for f in sorted(folder.glob("part-*.parquet")) for i in pq.read_table(f, columns=["prompt_id"]).column(0).to_pylist()]


def _expected(run: Path) -> list[str]:
    return sorted(pq.read_table(run / "prompts" / "train.parquet").column("id").to_pylist())


def test_actor_crash_loses_and_duplicates_nothing(tmp_path):
    run = tmp_path / "run"
    marker = tmp_path / "crashed"
    faults = json.dumps({"engine_batch": {"at": 1, "marker": str(marker)}})
    res = run_cli(["generate", *BASE, f"run_dir={run}"], env={"CST_RAY_FAULTS": faults})
    assert res.returncode == 0, res.stderr[-3000:]
    assert marker.exists(), "no actor crashed"
    ids = _ids(run / "generate" / "generations")
    assert sorted(ids) == _expected(run)  # 0 lost, 0 duplicated
    assert len(ids) == len(set(ids)) == 24


def test_a_batch_that_always_kills_its_actor_ends_in_one_line(tmp_path):
    """issue 25: restarts and retries are bounded (generation.pool.max_restarts); the stage then
    stops with one line naming the key, instead of looping forever."""
    run = tmp_path / "run"
    faults = json.dumps({"engine_batch": {"at": 1, "always": True}})
    res = run_cli(["generate", *BASE, f"run_dir={run}", "generation.pool.max_restarts=1"],
                  env={"CST_RAY_FAULTS": faults}, timeout=900)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("cst-ray: error:")]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    assert "generation.pool.max_restarts: 1" in lines[0] and "died 2 times" in lines[0]


def test_killed_driver_rerun_completes_exactly_once(tmp_path):
    run = tmp_path / "run"
    out = run / "generate" / "generations"
    # 48 prompts in 4 blocks of 12 with longer answers: the driver is killed as soon as the first
    # block's shards land, long before the other blocks are done
    args = [*BASE, f"run_dir={run}", "data.limit=48", "generation.engine.max_new_tokens=16",
            "generation.critique.critique_max_new_tokens=16"]
    proc = subprocess.Popen([sys.executable, "-m", "cst_ray.cli", "generate", *args], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not list(out.glob("part-*.parquet")):
        assert proc.poll() is None, "generate finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _ids(out)
    print("rows before the kill:", len(before))
    assert 0 < len(before) < 48
    res = run_cli(["generate", *args])
    assert res.returncode == 0, res.stderr[-3000:]
    ids = _ids(out)
    assert sorted(ids) == _expected(run) and len(ids) == len(set(ids)) == 48
    import json

    st = json.loads((run / "generate" / "stats.json").read_text())
    assert st["already_done"] == len(before) and st["rows_out"] == 48 - len(before)


def test_quality_filters_are_counted_and_kept(tmp_path):
    """With the filters on, a random model's rows are rejected with reasons, never dropped."""
    run = tmp_path / "run"
    res = run_cli(["generate", *BASE, f"run_dir={run}", "data.limit=8", "generation.filters.truncated=true",
                   "generation.filters.trim_truncated=false", "generation.filters.y1_not_harmless=true"])
    assert res.returncode == 0, res.stderr[-3000:]
    kept = _ids(run / "generate" / "generations")
    rejected = [r for f in sorted((run / "generate" / "rejected_rows").glob("part-*.parquet"))
                for r in pq.read_table(f).to_pylist()]
    assert len(kept) + len(rejected) == 8
    assert all(r["reject_reason"] for r in rejected)
    import json

    st = json.loads((run / "generate" / "stats.json").read_text())
    assert sum(st["rejected_by_reason"].values()) == len(rejected) == st["rows_rejected"]
