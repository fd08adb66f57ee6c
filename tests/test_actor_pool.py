"""The engine actor pool (pipeline.run_actor_map): where a batch runs and what the actor's process sees."""

import os
import threading

import pyarrow as pa
import pytest

from cst_ray.config.schema import ActorPoolConfig

pytestmark = pytest.mark.heavy

SCHEMA = pa.schema([("id", pa.string()), ("omp", pa.string()), ("ld_preload", pa.string()), ("pid", pa.int64()),
                    ("overlapped", pa.bool_())])


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from cst_ray.config.schema import RayConfig
    from cst_ray.core.ray_env import init_ray

    init_ray(RayConfig(num_cpus=4))
    yield
    ray.shutdown()


def test_pool_runs_batches_in_flight_with_the_configured_environment(ray_local, tmp_path):
    """Two batches at once per actor, every row exactly once, and the actor's process started with
    the configured threads and the engine's allocator override."""
    from cst_ray.dataio.actor_map import run_actor_map
    from cst_ray.dataio.shards import read_shards

    class Probe:  # defined here so that Ray pickles it by value
        def __init__(self):
            self.lock = threading.Lock()
            self.active = 0
            self.overlapped = False

        def __call__(self, batch: pa.Table) -> pa.Table:
            import time

            with self.lock:
                self.active += 1
                self.overlapped |= self.active > 1
            time.sleep(1.0)  # long enough for the next batch to arrive while this one runs
            with self.lock:
                self.active -= 1
                overlapped = self.overlapped
            n = batch.num_rows
            return pa.table({"id": batch.column("id"), "omp": [os.environ.get("OMP_NUM_THREADS", "")] * n,
                             "ld_preload": [os.environ.get("LD_PRELOAD", "")] * n, "pid": [os.getpid()] * n,
                             "overlapped": [overlapped] * n},
                            schema=SCHEMA)

    table = pa.table({"id": [f"r{i}" for i in range(16)]})
    pool = ActorPoolConfig(min_actors=1, max_actors=1, batch_size=4, num_cpus=1, threads=3, batches_in_flight=2)
    st = run_actor_map(label="probe", table=table, out_dir=tmp_path / "out", fn_cls=Probe, fn_kwargs={}, pool=pool,
                       schema=SCHEMA, rows_per_shard=100, env_vars={"LD_PRELOAD": ""})
    assert st.rows_out == 16 and st.duplicates_dropped == 0
    rows = read_shards(tmp_path / "out").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(table.column("id").to_pylist())
    assert len({r["pid"] for r in rows}) == 1  # one actor, four batches
    assert any(r["overlapped"] for r in rows), "no two batches ever ran at once on the actor"
    # threads from config reach the process at its start (Ray would set num_cpus=1)
    assert {r["omp"] for r in rows} == {"3"}
    # the engine's env overrides the workers' allocator preload
    assert {r["ld_preload"] for r in rows} == {""}


def test_a_busy_actor_does_not_hoard_batches_a_later_actor_could_run(ray_local, tmp_path):
    """The first actor to come up must not have every batch queued on it: an actor that starts
    later still gets work (batches wait in Ray Data's queue, not on a busy actor)."""
    from cst_ray.dataio.actor_map import run_actor_map
    from cst_ray.dataio.shards import read_shards

    ticket = tmp_path / "tickets"
    ticket.mkdir()

    class SlowSecond:  # the second actor to start takes 1 s longer to come up
        def __init__(self, folder: str):
            import time

            n = len(os.listdir(folder))
            open(os.path.join(folder, f"{os.getpid()}"), "w").close()
            if n > 0:
                time.sleep(1.0)

        def __call__(self, batch: pa.Table) -> pa.Table:
            import time

            time.sleep(3.0)  # the second actor is up long before this batch ends
            n = batch.num_rows
            return pa.table({"id": batch.column("id"), "omp": [""] * n, "ld_preload": [""] * n,
                             "pid": [os.getpid()] * n, "overlapped": [False] * n}, schema=SCHEMA)

    # two batches for two actors: Ray Data's default would queue both on the first actor up
    table = pa.table({"id": [f"r{i}" for i in range(8)]})
    pool = ActorPoolConfig(min_actors=2, max_actors=2, batch_size=4, num_cpus=1, threads=1, batches_in_flight=1)
    st = run_actor_map(label="balance", table=table, out_dir=tmp_path / "out", fn_cls=SlowSecond,
                       fn_kwargs={"folder": str(ticket)}, pool=pool, schema=SCHEMA, rows_per_shard=100)
    assert st.rows_out == 8 and st.duplicates_dropped == 0
    rows = read_shards(tmp_path / "out").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(table.column("id").to_pylist())
    per_actor = {}
    for r in rows:
        per_actor[r["pid"]] = per_actor.get(r["pid"], 0) + 1
    assert len(per_actor) == 2, f"every batch ran on one actor: {per_actor}"
    assert sorted(per_actor.values()) == [4, 4]  # the rows cut evenly, one call each


def test_no_more_actors_start_than_there_are_batches(ray_local, tmp_path):
    """One row for a pool of at least two: one actor starts (an engine's start costs seconds of
    CPU), and it gets the pool's configured threads."""
    from cst_ray.dataio.actor_map import run_actor_map
    from cst_ray.dataio.shards import read_shards

    started = tmp_path / "started"
    started.mkdir()

    class Count:
        def __init__(self, folder: str):
            open(os.path.join(folder, f"{os.getpid()}"), "w").close()

        def __call__(self, batch: pa.Table) -> pa.Table:
            n = batch.num_rows
            return pa.table({"id": batch.column("id"), "omp": [os.environ.get("OMP_NUM_THREADS", "")] * n,
                             "ld_preload": [""] * n, "pid": [os.getpid()] * n, "overlapped": [False] * n},
                            schema=SCHEMA)

    pool = ActorPoolConfig(min_actors=2, max_actors=2, batch_size=4, num_cpus=1, threads=1)
    st = run_actor_map(label="one-row", table=pa.table({"id": ["only"]}), out_dir=tmp_path / "out", fn_cls=Count,
                       fn_kwargs={"folder": str(started)}, pool=pool, schema=SCHEMA, rows_per_shard=100)
    assert st.rows_out == 1
    assert read_shards(tmp_path / "out").column("omp").to_pylist() == ["1"]
    assert len(os.listdir(started)) == 1, f"actors started: {os.listdir(started)}"
