"""Exactly-once Parquet shards: a writer that skips ids already written, and readers."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cst_ray.core.files import atomic_write_table

log = logging.getLogger(__name__)


def _shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def read_ids(folder: str | Path, column: str = "id") -> set[str]:
    """Ids already written to the complete shards of `folder`."""
    ids: set[str] = set()
    for f in _shard_files(Path(folder)):
        ids.update(pq.read_table(f, columns=[column]).column(column).to_pylist())
    return ids


def read_shards(folder: str | Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every complete shard of `folder`, one row per id: a row whose id an earlier shard already
    holds (two writers on one folder) is dropped, and the drops are counted in a warning."""
    files = _shard_files(Path(folder))
    if not files:
        return None
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default")
    if "id" not in table.column_names:
        return table
    first: dict = {}
    for i, row_id in enumerate(table.column("id").to_pylist()):
        first.setdefault(row_id, i)
    dropped = table.num_rows - len(first)
    if dropped:
        log.warning(f"{folder}: {dropped} rows with an id already read were dropped (kept the first of each)")
        table = table.take(pa.array(sorted(first.values()), pa.int64()))
    return table


class ShardWriter:
    """Buffers rows and writes `part-<seq>-<uuid>.parquet` atomically every `rows_per_shard`."""

    def __init__(self, folder: str | Path, schema: pa.Schema, rows_per_shard: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self._buf: list[pa.Table] = []
        self._n = 0
        self._seq = len(_shard_files(self.folder))
        self.rows_written = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._buf.append(table)
        self._n += table.num_rows
        if self._n >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        t = pa.concat_tables(self._buf).cast(self.schema)
        name = f"part-{self._seq:06d}-{uuid.uuid4().hex[:8]}.parquet"
        atomic_write_table(t, self.folder / name)
        self._seq += 1
        self.rows_written += t.num_rows
        self._buf, self._n = [], 0
