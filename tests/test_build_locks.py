"""A JIT-build lock left by a killed training worker no longer hangs every later run."""

import logging
import os
import time

from cst_ray.training.build_locks import clear_stale_build_locks


def test_a_stale_lock_is_removed_and_a_live_one_kept(tmp_path, caplog):
    stale, live = tmp_path / "deepspeed_shm_comm" / "lock", tmp_path / "other_op" / "lock"
    for lock in (stale, live):
        lock.parent.mkdir()
        lock.touch()
    (tmp_path / "deepspeed_shm_comm" / "deepspeed_shm_comm.so").touch()
    old = time.time() - 3600
    os.utime(stale, (old, old))
    with caplog.at_level(logging.WARNING):
        removed = clear_stale_build_locks(tmp_path, max_age_s=300)
    assert removed == [stale] and not stale.exists() and live.exists()
    assert (tmp_path / "deepspeed_shm_comm" / "deepspeed_shm_comm.so").exists()  # only the lock goes
    assert str(stale) in caplog.text


def test_the_workers_extensions_dir_is_the_default(tmp_path, monkeypatch):
    lock = tmp_path / "op" / "lock"
    lock.parent.mkdir()
    lock.touch()
    os.utime(lock, (0, 0))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert clear_stale_build_locks() == [lock]
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "absent"))
    assert clear_stale_build_locks() == []
