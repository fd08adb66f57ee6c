"""The engine actor pool (pipeline.run_actor_map): where a batch runs and what the actor's process sees."""

import os
import threading

import pyarrow as pa
import pytest

from cst_ray.config import ActorPoolConfig

pytestmark = pytest.mark.heavy

SCHEMA = pa.schema([("id", pa.string()), ("omp", pa.string()), ("ld_preload", pa.string()), ("pid", pa.int64()),
                    ("overlapped", pa.bool_())])


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from cst_ray.config import RayConfig
    from cst_ray.runtime import init_ray

    init_ray(RayConfig(num_cpus=4))
    yield
    ray.shutdown()


def test_pool_runs_batches_in_flight_with_the_configured_environment(ray_local, tmp_path):
    """Two batches at once per actor, every row exactly once, and the actor's process started with
    the configured threads and the engine's allocator override."""
    from cst_ray.generation.pipeline import read_shards, run_actor_map

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
