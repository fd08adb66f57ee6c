"""The user cache (~/.cache/cst-ray or $CST_RAY_CACHE) and a cross-process lock for its builders."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock on `path` (created) across processes: one builder of a cached artefact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cache_dir() -> Path:
    return Path(os.environ.get("CST_RAY_CACHE", "~/.cache/cst-ray")).expanduser()
