"""One driver per run directory: an exclusive `flock` on `<run_dir>/.cst-ray.lock`, held for the
whole command and released by the kernel when the process ends, however it ends. A second driver
on the same folder fails at once, naming the holder's pid, before it writes anything."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cst_ray.core.errors import ConfigError

LOCK_NAME = ".cst-ray.lock"


@contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the run directory's lock while the block runs; ConfigError if another driver holds it."""
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"is in use by another cst-ray driver (pid {holder}); wait for it to end or choose "
                          f"another run_dir", key="run_dir", file=str(Path(run_dir))) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
