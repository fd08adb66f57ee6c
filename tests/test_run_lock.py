"""One driver per run directory (issue 25): a second `cst-ray` on a folder another driver holds
stops at once with one line naming the holder's pid, and writes nothing there."""

import subprocess
import sys
import time

from conftest import ROOT, run_cli

from cst_ray.core.run_lock import LOCK_NAME, run_dir_lock

HOLD = """
import sys, time
from cst_ray.core.run_lock import run_dir_lock
with run_dir_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_driver_on_a_held_run_dir_stops_naming_the_holder(tmp_path, tiny_model_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        res = run_cli(["generate", "--config", "configs/tiny.yaml", f"run_dir={run}",
                       f"model.name_or_path={tiny_model_path}", f"generation.critic.name_or_path={tiny_model_path}"],
                      timeout=120)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert f"in use by another cst-ray driver (pid {holder.pid})" in lines[0] and "key run_dir" in lines[0]
        assert time.time() - t0 < 60  # at once, not after the holder ends
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_released_when_its_holder_ends(tmp_path):
    with run_dir_lock(tmp_path / "run"):
        pass
    with run_dir_lock(tmp_path / "run") as path:  # a rerun after the first driver ended
        assert path.read_text().strip().isdigit()


def test_shard_readers_keep_one_row_per_id_and_count_the_rest(tmp_path, caplog):
    """Two writers on one folder (what the lock prevents) leave an id twice: the reader keeps the
    first and says how many it dropped."""
    import logging

    import pyarrow as pa

    from cst_ray.dataio.shards import ShardWriter, read_shards

    schema = pa.schema([("id", pa.string()), ("v", pa.int64())])
    for rows in ([("a", 1), ("b", 2)], [("b", 20), ("c", 3)]):  # a second writer repeats "b"
        w = ShardWriter(tmp_path, schema, rows_per_shard=10)
        w.add(pa.Table.from_pylist([{"id": i, "v": v} for i, v in rows], schema))
        w.flush()
    with caplog.at_level(logging.WARNING, logger="cst_ray.dataio.shards"):
        t = read_shards(tmp_path)
    assert t.column("id").to_pylist() == ["a", "b", "c"] and t.column("v").to_pylist() == [1, 2, 3]
    assert "1 rows with an id already read were dropped" in caplog.text
