"""Atomic file writes: a temporary name in the same folder, flushed, then renamed over the
target (`os.replace`), so a reader sees the old file or the new one, never part of one; the
folder is fsynced after the rename, so the new name survives a power loss too."""

from __future__ import annotations

import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq


@contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def append_line(path: str | Path, line: str) -> None:
    """Append one line whole: written in one `write` call and fsynced. A reader of such a file
    (`core.stats.read_metrics`) skips a torn last line left by a crash."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_table(table, path: str | Path) -> None:
    """A pyarrow Table as one Parquet file."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


_DIGESTS: dict[tuple, str] = {}


def path_sha256(path: str | Path, suffixes: tuple[str, ...] = ()) -> str:
    """sha256 over a file, or over a folder's files (names and bytes, sorted; hidden files and,
    with `suffixes`, files of other types left out). Cached per process by name, size and mtime,
    so a model folder is read once however many fingerprints ask."""
    p = Path(path).expanduser()
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                                           and (not suffixes or f.suffix in suffixes))
    key = (suffixes, *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _DIGESTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 23), b""):
                    h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]
