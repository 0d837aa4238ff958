"""The run directory: Parquet shards named by content keys, written atomically, read back for resume.

Layout of a run directory:
    config.yaml                 the resolved config of the run the tables are from, written with them at the end
                                 (no secrets: keys live in environment variables)
    config.running.yaml         the config of a run in progress, or stopped part-way
    shards/<table>/<key>.parquet one file per stage shard; <key> hashes the shard's inputs and the settings that
                                 affect it, so a rerun finds finished shards and a changed setting misses them;
                                 <key>.rows.json beside it holds its rows' own keys and the rows to retry, and
                                 <key>.partial.* the rows a failed shard had back (found by row key, never read as
                                 a shard; removed once the shard is written whole)
    <table>.parquet             the consolidated table of this run (only the current keys, never stale shards)
    report.md, report.json …    the report

Writes go to a temporary name in the same folder and are renamed into place (atomic on POSIX), so a half-written
shard is never read: a crash loses at most the shards in flight.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import RunDirError

log = logging.getLogger(__name__)


def content_key(*parts: Any) -> str:
    """A 20-hex-digit key over JSON-serialisable parts (dict keys sorted, so field order never matters)."""
    h = hashlib.sha256()
    for part in parts:
        # Non-string keys as the strings they are sent as (a logit_bias of token ids in extra_body): refused, they
        # stopped the run with a traceback.
        h.update(orjson.dumps(part, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
                              default=_default))
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
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a write or rename that failed (a folder at `path`, a full disk) leaves nothing
        raise


def atomic_write_table(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        # Page checksums: a shard damaged inside (a bad copy, a disk) is found when read back (Store._intact),
        # where its intact footer alone passed, and the rerun failed reading it or read wrong values.
        pq.write_table(table, tmp, write_page_checksum=True)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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

    def remove_leftovers(self) -> None:
        """Delete temporary files of a crash mid-write (never read). Only under the run's lock: another run's
        temporary files are its shards in flight."""
        # The run's tables are written at its root the same way (a crash there left a whole table's copy behind).
        for leftover in [*self.root.glob("shards/*/.*.tmp"), *self.root.glob(".*.parquet.*.tmp")]:
            leftover.unlink(missing_ok=True)

    def shard_path(self, table: str, key: str) -> Path:
        return self.root / "shards" / table / f"{key}.parquet"

    def has(self, tables: Iterable[str], key: str) -> bool:
        """True when every table of a stage has its shard for `key` (a stage's shard is done only then), and each
        can be read: a shard or row index damaged outside the engine (its own writes are atomic) is computed again —
        a truncated table was a traceback, and an unreadable row index read the shard's failed rows as final."""
        return all(self._intact(t, key) for t in tables)

    def _intact(self, table: str, key: str) -> bool:
        """The shard's table can be read, and so can its row index where it has one."""
        path, rows_path = self.shard_path(table, key), self.rows_path(table, key)
        return path.is_file() and self._readable(path, _read_verified) and (
            not rows_path.is_file() or self._readable(rows_path, _row_index))

    def _readable(self, path: Path, read: Any) -> bool:
        """Whether read(path) succeeds; a file read once is not read again while it is unchanged."""
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns)
        if stamp in _READABLE_SEEN:
            return True
        try:
            read(path)
        except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
            log.warning("%s: unreadable (%s); that shard is computed again", path, str(exc)[:160])
            return False
        _READABLE_SEEN.add(stamp)
        return True

    def rows_path(self, table: str, key: str) -> Path:
        return self.root / "shards" / table / f"{key}.rows.json"

    def write_shard(self, tables: dict[str, pa.Table], key: str, rows: dict[str, Any] | None = None,
                    reshaped: bool = False) -> None:
        """Write one stage shard: each of its tables under `key`, atomically per file, with `rows` (the row keys and
        the rows to retry, see read_row_index). The order makes a crash between two files safe: a new shard's row
        index goes first (a table on disk always has its index); a shard rewritten after a retry gets its table first
        (the old index, still marking the retried rows, then stands beside it — a new index beside the old table
        would read the old table's failed rows as finished, never to be retried). A partial shard (`reshaped`: a
        failed unit's rows so far, rewritten as more come) changes its rows' positions, so no old index may stand
        beside its new table: the index goes before it is rewritten (a crash then costs those rows' recomputing,
        never another row's output read for one).

        Args:
            reshaped: the rows' positions may differ from the stored shard's (the dataflow's partial shards)."""
        for name, table in tables.items():
            rows_path, path = self.rows_path(name, key), self.shard_path(name, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            if reshaped:
                rows_path.unlink(missing_ok=True)
                atomic_write_table(path, table)
                if rows is not None:
                    atomic_write_bytes(rows_path, orjson.dumps(rows))
            elif rows is not None and not rows_path.is_file():
                atomic_write_bytes(rows_path, orjson.dumps(rows))
                atomic_write_table(path, table)
            else:
                atomic_write_table(path, table)
                if rows is not None:
                    atomic_write_bytes(rows_path, orjson.dumps(rows))

    def remove_shard(self, table: str, key: str) -> None:
        """Remove shard `key` of `table` if there is one: its table first, then its row index (an index without its
        table is never read; a table without its index would be)."""
        self.shard_path(table, key).unlink(missing_ok=True)
        self.rows_path(table, key).unlink(missing_ok=True)

    def read_row_index(self, table: str) -> dict[str, tuple[str, int, dict[str, Any] | None]]:
        """Every finished row of `table`'s shards: row key → (shard key, row, retry) where retry is
        {"error", "attempts"} for a row whose backend call failed transiently, else None. Shards without a row
        index (written before there was one) contribute nothing."""
        index: dict[str, tuple[str, int, dict[str, Any] | None]] = {}
        folder = self.root / "shards" / table
        for path in sorted(folder.glob("*.rows.json")) if folder.is_dir() else []:
            key = path.name[: -len(".rows.json")]
            shard = self.shard_path(table, key)
            if not shard.is_file() or not self._readable(shard, _read_verified):
                continue  # the index is parsed below (an unreadable one is skipped there)
            try:
                data = orjson.loads(path.read_bytes())
                row_keys, retry = data["keys"], data.get("retry") or {}
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: those rows are computed again, never misread
            for k, row_key in enumerate(row_keys):
                found = (key, k, retry.get(str(k)))
                # A finished row wins over a failed copy of the same row; among failed copies, the one tried most
                # (else a row failing for good in recut shards read as tried once, and was paid for at every rerun).
                held = index.get(row_key)
                if held is None or held[2] is not None and (found[2] is None
                                                            or _attempts(found[2]) > _attempts(held[2])):
                    index[row_key] = found
        return index

    def retries(self, table: str, key: str) -> list[int]:
        """For each row of shard `key` of `table` whose backend call failed transiently: how many times it did."""
        path = self.rows_path(table, key)
        if not path.is_file():
            return []
        try:
            retry = orjson.loads(path.read_bytes()).get("retry") or {}
            return [int(info.get("attempts", 1)) for info in retry.values()]
        except (OSError, ValueError, AttributeError, TypeError):
            return []

    def marked_rows(self, table: str, key: str, limit: int) -> list[int]:
        """The rows of shard `key` of `table` still marked for a rerun: failed transiently at most `limit` times."""
        path = self.rows_path(table, key)
        try:
            retry = orjson.loads(path.read_bytes()).get("retry") or {} if path.is_file() else {}
            return sorted(int(k) for k, info in retry.items() if int(info.get("attempts", 1)) <= limit)
        except (OSError, ValueError, AttributeError, TypeError):
            return []

    def read_rows(self, table: str, wanted: dict[str, list[int]]) -> dict[tuple[str, int], dict[str, Any]]:
        """The rows {shard key: [row, …]} of `table`, as {(shard key, row): row dict}."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for key, rows in wanted.items():
            part = pq.read_table(self.shard_path(table, key)).take(pa.array(sorted(set(rows)), pa.int64()))
            for k, row in zip(sorted(set(rows)), part.to_pylist()):
                out[(key, k)] = row
        return out

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

    def remove_table(self, name: str) -> None:
        """Remove the run's table `name` (an earlier run's, which this run did not compute), if there is one."""
        self.remove_file(f"{name}.parquet")

    def remove_file(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def read_table(self, name: str) -> pa.Table:
        return pq.read_table(self.root / f"{name}.parquet")

    def write_text(self, name: str, text: str) -> Path:
        path = self.root / name
        atomic_write_bytes(path, text.encode("utf-8"))
        return path


# (path, size, mtime_ns) of the files this process found readable (Store._readable), shared by every Store: a reward
# function makes a Pipeline, so a Store, at each training step, and each read every shard again. A file replaced
# (atomically, renamed over it) has another stamp and is read again. Guarded by the GIL: only set.add and membership.
_READABLE_SEEN: set[tuple[str, int, int]] = set()


def _read_verified(path: Path) -> None:
    """Read a shard whole, checking its pages' checksums (written since they were: older shards are read as they
    are). Its footer alone (pq.read_metadata) passed a shard whose pages were damaged."""
    pq.read_table(path, page_checksum_verification=True)


def _row_index(path: Path) -> dict[str, Any]:
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a row index")
    return data


def _attempts(retry: dict[str, Any]) -> int:
    value = retry.get("attempts", 1)
    return value if isinstance(value, int) else 1


MARKER = ".taskdiv-run"  # marks a folder as a taskdiv run directory
LOCK = ".taskdiv-run.lock"


def check_no_links(root: str | Path) -> None:
    """Refuse a run directory whose folders the engine writes into and deletes from (figures, shards and each
    table's shards) are symbolic links: a run directory received from someone else (a tarball keeps links) would
    have its stale figures and a crash's temporary files deleted, and its shards written, wherever the links point.

    Raises:
        RunDirError: naming the link.
    """
    root = Path(root)
    shards = root / "shards"
    folders = [root / "figures", shards] + (sorted(shards.iterdir()) if shards.is_dir() and not shards.is_symlink()
                                            else [])
    for folder in folders:
        if folder.is_symlink():
            raise RunDirError(f"run_dir {root}: {folder.relative_to(root)} is a symbolic link (to "
                              f"{os.readlink(folder)!r}); a run writes and deletes files in it — replace it with a "
                              "folder")


def claim_run_dir(root: str | Path) -> None:
    """Make sure a run may write into `root`: a folder that does not exist yet, an empty one, or one marked as a
    taskdiv run (or holding an earlier run's config.yaml and shards). A run writes report files, figures and
    tables at the top of its folder; pointed at a folder of other files it would overwrite them.

    Raises:
        RunDirError: the folder holds other files.
    """
    root = Path(root)
    check_no_links(root)
    if (root / MARKER).is_file():
        return
    if root.is_dir():
        entries = sorted(e.name for e in root.iterdir()
                         if e.name not in (LOCK,) and not e.name.startswith(".write-probe"))
        earlier_run = (root / "config.yaml").is_file() and (root / "shards").is_dir()
        if entries and not earlier_run:
            shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
            raise RunDirError(f"run_dir {root}: the folder holds {len(entries)} entries ({shown}) and is not a taskdiv "
                              "run directory; choose a new or empty folder (a run writes its tables, report and "
                              "figures there)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(root / MARKER, b"taskdiv run directory\n")
    except OSError as exc:
        raise RunDirError(f"run_dir {root}: cannot write there ({exc.strerror or exc})") from exc


def unclaim_run_dir(root: str | Path, lock: "RunDirLock") -> None:
    """Remove a run directory that a run made and wrote nothing into (a config refused in preflight): a mistyped
    run_dir was left behind as an empty "taskdiv run directory". Only while `lock` is held, and only a folder holding
    nothing but the marker and the lock."""
    root = Path(root)
    if lock._fd is None or not root.is_dir() or {e.name for e in root.iterdir()} - {MARKER, LOCK}:
        return
    for name in (MARKER, LOCK):
        (root / name).unlink(missing_ok=True)
    try:
        root.rmdir()
    except OSError:  # something came in meanwhile: it stays
        pass


class RunDirLock:
    """An exclusive lock on a run directory for the time a run uses it.

    A second run on the same folder stops at once with a message naming the holder (pid, host, start time),
    instead of reading half-written tables or deleting the first run's shards in flight. The lock is an flock on
    `.taskdiv-run.lock`: the kernel drops it when its process dies, so a crashed run never leaves a stale lock;
    the holder's details in the file are only for the message.
    """

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / LOCK
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise RunDirError naming its holder. Taking a lock already held here is a no-op."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            try:
                info = orjson.loads(holder)
                who = (f"pid {info.get('pid')} on {info.get('host')}, started "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.get('started', 0)))}")
            except (ValueError, TypeError, AttributeError):
                who = "a process that left no details"
            raise RunDirError(f"run_dir {self.path.parent} is in use by another run ({who}); wait for it to finish "
                              "or choose another run_dir") from None
        except OSError as exc:  # a file system without flock: say so rather than run unprotected silently
            os.close(fd)
            raise RunDirError(f"run_dir {self.path.parent}: cannot lock it ({exc.strerror or exc})") from None
        os.ftruncate(fd, 0)
        os.write(fd, orjson.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
