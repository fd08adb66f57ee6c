"""Local paths and remote URIs (s3://, gs://, ...) through pyarrow filesystems.

Credentials are never passed here: pyarrow and Ray read them from the environment
(AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, ...) or from the
node's cloud identity, so they never end up in configs, logs or run directories.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs

from cst_ray.core.files import atomic_write_text, fsync_dir


def is_uri(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def resolve_storage(path: str) -> str:
    """Absolute local path, or the URI unchanged (Ray Train needs absolute paths)."""
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def _fs(location: str):
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())


def exists(location: str) -> bool:
    fs, path = _fs(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_names(location: str) -> list[str]:
    """Names of the entries directly under a folder (empty if it does not exist)."""
    fs, path = _fs(location)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    return sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(path, recursive=False)))


def _copy_tree(src: str, dst: str, skip: tuple[str, ...] = ()) -> int:
    """Copy every file under `src` to `dst` (either may be a URI), except top-level entries in
    `skip`. Files are copied one by one; each lands complete or not at all on object stores.
    Returns the number of files copied."""
    sfs, sroot = _fs(src)
    dfs, droot = _fs(dst)
    if sfs.get_file_info(sroot).type == pafs.FileType.NotFound:
        return 0
    n = 0
    infos = sfs.get_file_info(pafs.FileSelector(sroot, recursive=True))
    # The top-level stats.json marks a stage complete: it is copied last.
    for info in sorted(infos, key=lambda i: (i.path == f"{sroot}/stats.json", i.path)):
        rel = info.path[len(sroot):].lstrip("/")
        if info.type != pafs.FileType.File or rel.split("/", 1)[0] in skip:
            continue
        target = f"{droot}/{rel}"
        dfs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(info.path, target, source_filesystem=sfs, destination_filesystem=dfs)
        n += 1
    return n


def copy_dir(src: str, dst: str, skip: tuple[str, ...] = ()) -> int:
    """Copy a local folder to a local path or a URI, replacing files of the same name."""
    if not is_uri(dst) and not is_uri(src) and not skip:
        os.makedirs(dst, exist_ok=True)
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return sum(len(f) for _, _, f in os.walk(src))
    return _copy_tree(src, dst, skip)


def replace_dir(src: str, dst: str) -> int:
    """Put the local folder `src` at `dst` with no file of an older `dst` left behind: locally,
    a copy beside `dst` renamed over it (the old one removed after); at a URI, the old prefix is
    deleted first, then the files are copied one by one."""
    if is_uri(dst):
        fs, path = _fs(dst)
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir_contents(path, missing_dir_ok=True)
        return _copy_tree(src, dst)
    target = Path(dst).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.new-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    fsync_dir(target.parent)
    return sum(len(f) for _, _, f in os.walk(target))


def fetch_dir(src: str, dst: str) -> int:
    """Copy a folder at a URI (or local path) into a local folder."""
    return _copy_tree(src, dst)


def read_text(location: str) -> str | None:
    """A small file's text at a local path or URI; None when there is no such file."""
    fs, path = _fs(location)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def write_text(location: str, text: str) -> None:
    """Write a small file at a local path or URI (a local one atomically)."""
    if not is_uri(location):
        Path(location).expanduser().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(location).expanduser(), text)
        return
    fs, path = _fs(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:  # object stores publish the object whole on close
        f.write(text.encode("utf-8"))
