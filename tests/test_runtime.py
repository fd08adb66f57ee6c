"""Process environment of Ray workers: the allocator (runtime.allocator_env), engine overrides, cores."""

from pathlib import Path

import pytest

from cst_ray.core.ray_env import (
    allocator_env,
    engine_env,
    jemalloc_path,
    physical_cores,
    worker_env,
)


def test_jemalloc_from_ray_is_preloaded_into_workers(monkeypatch):
    monkeypatch.delenv("CST_RAY_ALLOCATOR", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    je = jemalloc_path()
    if not je:
        pytest.skip("this Ray build ships no libjemalloc.so (non-Linux)")
    assert Path(je).is_file() and Path(je).name == "libjemalloc.so"
    env = worker_env()
    assert env["LD_PRELOAD"] == je and "MALLOC_MMAP_THRESHOLD_" not in env
    # an existing preload is kept, and jemalloc is not added twice
    monkeypatch.setenv("LD_PRELOAD", "/opt/other.so")
    assert allocator_env()["LD_PRELOAD"] == f"{je}:/opt/other.so"
    monkeypatch.setenv("LD_PRELOAD", f"/opt/other.so:{je}")
    assert allocator_env()["LD_PRELOAD"] == f"/opt/other.so:{je}"


def test_glibc_and_system_allocators(monkeypatch):
    monkeypatch.setenv("CST_RAY_ALLOCATOR", "glibc")
    env = worker_env()
    assert env["MALLOC_MMAP_THRESHOLD_"] == "1048576" and "LD_PRELOAD" not in env
    assert env["CST_RAY_ALLOCATOR"] == "glibc"  # workers see the same choice
    monkeypatch.setenv("CST_RAY_ALLOCATOR", "system")
    assert allocator_env() == {}
    monkeypatch.setenv("CST_RAY_ALLOCATOR", "tcmalloc")
    with pytest.raises(ValueError, match="CST_RAY_ALLOCATOR='tcmalloc'"):
        allocator_env()


def _fake_sysfs(root: Path, siblings: dict[int, str]) -> Path:
    for cpu, sib in siblings.items():
        d = root / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(sib + "\n")
    return root


def test_physical_cores_count_hyperthreads_once(tmp_path):
    import os

    cpus = sorted(os.sched_getaffinity(0))
    # every allowed CPU its own core
    own = _fake_sysfs(tmp_path / "own", {c: str(c) for c in cpus})
    assert physical_cores(own) == len(cpus)
    # all allowed CPUs hyper-threads of one core
    one = _fake_sysfs(tmp_path / "one", {c: ",".join(map(str, cpus)) for c in cpus})
    assert physical_cores(one) == 1
    # no topology in sysfs (some containers): logical CPUs
    assert physical_cores(tmp_path / "missing") == len(cpus)
    assert 1 <= physical_cores() <= len(cpus)


def test_vllm_engine_actors_drop_only_rays_jemalloc(monkeypatch):
    je = jemalloc_path()
    monkeypatch.setenv("LD_PRELOAD", ":".join(x for x in ("/opt/a.so", je, "/opt/b.so") if x))
    assert engine_env("vllm") == {"LD_PRELOAD": "/opt/a.so:/opt/b.so"}
    assert engine_env("hf") == {}  # torch eager allocates like training: keeps the workers' jemalloc
    monkeypatch.delenv("LD_PRELOAD")
    assert engine_env("vllm") == {"LD_PRELOAD": ""}


def test_engine_threads_share_the_cores_among_the_pools_actors(monkeypatch):
    from cst_ray.config.schema import ActorPoolConfig
    from cst_ray.dataio import actor_map as pipeline

    monkeypatch.setattr(pipeline, "physical_cores", lambda: 8)
    assert pipeline.engine_threads(ActorPoolConfig(max_actors=1)) == 8
    assert pipeline.engine_threads(ActorPoolConfig(min_actors=1, max_actors=2)) == 4
    assert pipeline.engine_threads(ActorPoolConfig(max_actors=3)) == 2  # 8 // 3: never oversubscribed
    assert pipeline.engine_threads(ActorPoolConfig(max_actors=16)) == 1  # at least one
    assert pipeline.engine_threads(ActorPoolConfig(max_actors=2, threads=6)) == 6  # set in config: kept
    # what the actor's process gets at its start is the same number
    args = pipeline.actor_compute_args(ActorPoolConfig(max_actors=2))
    assert args["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "4"
