"""The allocator every Ray worker gets (runtime.allocator_env)."""

from pathlib import Path

import pytest

from cst_ray.runtime import allocator_env, jemalloc_path, worker_env


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
