"""Stale locks of PyTorch's JIT extension builds (DeepSpeed's CPU shared-memory comm op).

Each training worker's `deepspeed.init_distributed` on a CPU loads DeepSpeed's `deepspeed_shm_comm`
op through `torch.utils.cpp_extension.load`, which takes a lock file (`<extensions dir>/<op>/lock`)
while it checks or builds the op and otherwise waits, without end, for that file to go. A worker
killed inside that window (a run stopped with Ctrl-C or `ray stop` in its first seconds of
training) leaves the file behind, and every later run's workers then wait forever with nothing on
the console. A build takes well under a minute, so a lock older than `max_age_s` is a dead
process's: it is removed, with a warning naming it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def clear_stale_build_locks(extensions_dir: str | os.PathLike | None = None, max_age_s: float = 300.0) -> list[Path]:
    """Remove `<extensions_dir>/*/lock` files older than `max_age_s` -> the paths removed.
    `extensions_dir` defaults to $TORCH_EXTENSIONS_DIR (set for every worker by core/ray_env.py)."""
    root = extensions_dir or os.environ.get("TORCH_EXTENSIONS_DIR")
    if not root or not Path(root).is_dir():
        return []
    removed = []
    now = time.time()
    for lock in Path(root).glob("*/lock"):
        try:
            age = now - lock.stat().st_mtime
            if age > max_age_s:
                lock.unlink()
                removed.append(lock)
                log.warning("removed a stale JIT build lock left by a killed process (%.0f s old): %s", age, lock)
        except OSError:  # another worker removed it first, the build finished, or it is not ours to remove
            continue
    return removed
