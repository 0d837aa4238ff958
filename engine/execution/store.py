"""The run directory: Parquet shards named by content keys, written atomically, read back for resume.

Layout of a run directory:
    config.yaml                 the resolved config (no secrets: keys live in environment variables)
    shards/<table>/<key>.parquet one file per stage shard; <key> hashes the shard's inputs and the settings that
                                 affect it, so a rerun finds finished shards and a changed setting misses them
    <table>.parquet             the consolidated table of this run (only the current keys, never stale shards)
    report.md, report.json …    the report

Writes go to a temporary name in the same folder and are renamed into place (atomic on POSIX), so a half-written
shard is never read: a crash loses at most the shards in flight.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import RunDirError


def content_key(*parts: Any) -> str:
    """A 20-hex-digit key over JSON-serialisable parts (dict keys sorted, so field order never matters)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(orjson.dumps(part, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=_default))
        h.update(b"\x1e")
    return h.hexdigest()[:20]


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot hash {type(obj).__name__}")


def table_digest(table: pa.Table, columns: Iterable[str]) -> str:
    """Digest of the given columns of a table, row order included."""
    return content_key(table.select(list(columns)).to_pylist())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_table(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Store:
    """Shard files of one run directory.

    Args:
        root: the run directory; created if missing. Raises RunDirError if it cannot be written.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(f"run_dir {self.root}: cannot write there ({exc.strerror or exc})") from exc
        for leftover in self.root.glob("shards/*/.*.tmp"):  # from a crash mid-write; never read
            leftover.unlink(missing_ok=True)

    def shard_path(self, table: str, key: str) -> Path:
        return self.root / "shards" / table / f"{key}.parquet"

    def has(self, tables: Iterable[str], key: str) -> bool:
        """True when every table of a stage has its shard for `key` (a stage's shard is done only then)."""
        return all(self.shard_path(t, key).is_file() for t in tables)

    def write_shard(self, tables: dict[str, pa.Table], key: str) -> None:
        """Write one stage shard: each of its tables under `key`, atomically per file."""
        for name, table in tables.items():
            path = self.shard_path(name, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_table(path, table)

    def read_shards(self, table: str, keys: Iterable[str], schema: pa.Schema | None = None) -> pa.Table:
        """Concatenate the shards of `table` for `keys`, in the order given."""
        parts = [pq.read_table(self.shard_path(table, k)) for k in keys]
        if not parts:
            if schema is None:
                raise ValueError(f"no shards of {table} to read and no schema to build an empty table")
            return schema.empty_table()
        return pa.concat_tables(parts, promote_options="default")

    def write_table(self, name: str, table: pa.Table) -> Path:
        path = self.root / f"{name}.parquet"
        atomic_write_table(path, table)
        return path

    def read_table(self, name: str) -> pa.Table:
        return pq.read_table(self.root / f"{name}.parquet")

    def write_text(self, name: str, text: str) -> Path:
        path = self.root / name
        atomic_write_bytes(path, text.encode("utf-8"))
        return path
