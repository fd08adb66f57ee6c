"""Local paths and remote URIs (s3://, gs://, ...) through pyarrow filesystems."""

from __future__ import annotations

import os
from pathlib import Path


def is_uri(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def resolve_storage(path: str) -> str:
    """Absolute local path, or the URI unchanged (Ray Train needs absolute paths)."""
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def copy_dir(src: str, dst: str) -> None:
    """Copy a local folder to a local path or a URI, replacing files of the same name."""
    import pyarrow.fs as pafs

    if not is_uri(dst):
        import shutil

        os.makedirs(dst, exist_ok=True)
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    fs, root = pafs.FileSystem.from_uri(dst)
    fs.create_dir(root, recursive=True)
    pafs.copy_files(src, root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
