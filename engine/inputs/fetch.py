"""The public data sources the paper uses: fetched, verified and cached, like evaluation tools do.

Each source has a manifest in datasets/sources/<name>.yaml (data, not code): where it comes from (a release URL
per file, or a Hugging Face dataset id and revision), each file's sha256 and size where the source is pinned, its
licence, and how its rows become prompt records. `fetch` downloads a source into the user cache
($TASKDIV_CACHE, default the platform's cache dir + taskdiv, under datasets/<name>/):

- HTTPS files resume an interrupted transfer (an HTTP Range request from the partial file), show a progress bar,
  and are verified — size and sha256 — before an atomic rename; a mismatch deletes the partial file and is an
  error naming the source, the expected and the actual hash. A file the source ships as an Excel workbook is
  converted to the CSV the loaders read (`convert: xlsx-to-csv`), and the CSV is what is verified; the workbook,
  parsed first, is checked before against its own pins (download_size, download_sha256), or at least a size cap.
- Hugging Face datasets go through huggingface_hub (HF_TOKEN from the environment, never written anywhere). An
  unpinned revision is recorded at the first fetch with each file's sha256 (.fetched.json); a file that goes
  missing later is fetched again at that recorded revision, not the hub's current one, and must match its recorded
  hash, so the data never changes under a cached source. A file the copies of a dataset name differently is given
  as `patterns` (alternatives): the first that matches a file of the repository is fetched, and recorded.
- `--from DIR` imports files the user already has (a machine without network), verified the same way; of several
  files of one name below DIR, the first that verifies is taken.
- One process at a time fetches or imports a source: a lock per source (cache root/.locks/<name>.lock, flock), and
  whoever waited for it uses what the other fetched. Fetching again keeps what the record says of a file whose bytes
  are unchanged (where it was imported from; a Hugging Face source's revision).

Every cached file's size is checked against the record on every use, and its sha256 once per process (a file
changed in the cache is an error naming it, never read as the source).

A run whose config names a source uses the cached copy, fetching it first when hub access is on; offline and not
cached, it stops before any stage with the exact command to run.

Imports: engine.errors; httpx, huggingface_hub, openpyxl, pyarrow and engine.inputs.loaders.common inside the
functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from engine.config import load_yaml
from engine.errors import TaskdivError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES_DIR = REPO_ROOT / "datasets" / "sources"
FETCHED = ".fetched.json"  # per source folder: what was fetched, when, from which revision, with which hashes
CHUNK = 1 << 16


class FetchError(TaskdivError):
    """A source could not be fetched, verified or found (the message names it and what to do)."""


class NotCached(FetchError):
    """A source not in the cache where it may not be fetched (offline, or `plan`, which never downloads)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class NotInFolder(FetchError):
    """`fetch --from DIR`: DIR holds no copy of a file of the source (as opposed to a copy that fails to verify)."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: `name` and `url` (a release file) or `patterns` (files of a Hugging Face dataset: the
    manifest's `pattern`, or its `patterns`, alternatives of which the first matching a file of the repository is
    fetched). `download_sha256` / `download_size`: the file as downloaded, where it is converted (`convert`) before
    `sha256` / `size` can be checked — checked before the conversion parses it."""

    name: str | None = None
    url: str | None = None
    patterns: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    convert: str | None = None
    download_sha256: str | None = None
    download_size: int | None = None

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None and self.size is not None


@dataclass(frozen=True)
class Source:
    """A source's manifest (datasets/sources/<name>.yaml)."""

    name: str
    title: str
    license: str
    homepage: str
    main: str
    files: tuple[SourceFile, ...]
    rows: str = ""
    paper: str = ""
    loader: str | None = None
    hf_dataset: str | None = None
    revision: str | None = None

    @property
    def pinned(self) -> bool:
        """Every file has a sha256 and a size (a Hugging Face source also needs a revision)."""
        return all(f.pinned for f in self.files) and (self.hf_dataset is None or self.revision is not None)

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)


def load_manifest(path: Path) -> Source:
    """One manifest, checked: an error names the file and the key."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FetchError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise FetchError(f"{path}: expected a mapping")
    for key in ("name", "title", "license", "homepage", "main", "files"):
        if not data.get(key):
            raise FetchError(f"{path}: {key}: missing")
    if data["name"] != path.stem:
        raise FetchError(f"{path}: name: {data['name']!r} does not match the file name")
    files = []
    for k, f in enumerate(data["files"]):
        if not isinstance(f, dict):
            raise FetchError(f"{path}: files[{k}]: expected a mapping")
        unknown = set(f) - {"name", "url", "pattern", "patterns", "sha256", "size", "convert", "download_sha256",
                            "download_size"}
        if unknown:
            raise FetchError(f"{path}: files[{k}].{sorted(unknown)[0]}: unknown key")
        if data.get("hf_dataset") is None and not (f.get("name") and f.get("url")):
            raise FetchError(f"{path}: files[{k}]: a release file needs name and url")
        if f.get("convert") not in (None, "xlsx-to-csv"):
            raise FetchError(f"{path}: files[{k}].convert: unknown conversion {f['convert']!r}")
        if "pattern" in f and "patterns" in f:
            raise FetchError(f"{path}: files[{k}].patterns: give pattern or patterns, not both")
        patterns = [f["pattern"]] if "pattern" in f else f.get("patterns", [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns) or (
                ("pattern" in f or "patterns" in f) and not patterns):
            key = "pattern" if "pattern" in f else "patterns"
            raise FetchError(f"{path}: files[{k}].{key}: expected a file name or glob"
                             + (" (a list of them: alternatives)" if key == "patterns" else ""))
        if data.get("hf_dataset") is not None and not (f.get("name") or patterns):
            raise FetchError(f"{path}: files[{k}]: a Hugging Face file needs name, pattern or patterns")
        for key in ("download_sha256", "download_size"):
            if key in f and not f.get("convert"):
                raise FetchError(f"{path}: files[{k}].{key}: only for a file that is converted (convert)")
        for key in ("size", "download_size"):
            if f.get(key) is not None and (not isinstance(f[key], int) or isinstance(f[key], bool) or f[key] < 0):
                raise FetchError(f"{path}: files[{k}].{key}: expected a number of bytes, got {f[key]!r}")
        for key in ("sha256", "download_sha256"):
            value = f.get(key)
            if value is not None and not (isinstance(value, str) and len(value) == 64
                                          and all(c in "0123456789abcdef" for c in value)):
                raise FetchError(f"{path}: files[{k}].{key}: expected 64 lowercase hex digits, got {value!r}")
        fields = {key: value for key, value in f.items() if key not in ("pattern", "patterns")}
        files.append(SourceFile(**fields, patterns=tuple(patterns)))
    known = {"name", "title", "license", "homepage", "main", "files", "rows", "paper", "loader", "hf_dataset",
             "revision"}
    unknown = set(data) - known
    if unknown:
        raise FetchError(f"{path}: {sorted(unknown)[0]}: unknown key")
    return Source(**{**data, "files": tuple(files)})


def sources(directory: Path | None = None) -> dict[str, Source]:
    """Every manifest (default: datasets/sources), by name."""
    return {p.stem: load_manifest(p) for p in sorted((directory or SOURCES_DIR).glob("*.yaml"))}


def source(name: str, directory: Path | None = None) -> Source:
    known = sources(directory)
    if name not in known:
        raise FetchError(f"unknown source {name!r}; known: {', '.join(known)}")
    return known[name]


def cache_root() -> Path:
    """The user cache for fetched sources: $TASKDIV_CACHE/datasets, else $XDG_CACHE_HOME/taskdiv/datasets, else
    ~/.cache/taskdiv/datasets (the same root as the converted models of actors.local)."""
    if os.environ.get("TASKDIV_CACHE"):
        return Path(os.environ["TASKDIV_CACHE"]) / "datasets"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taskdiv" / "datasets"


def source_dir(name: str) -> Path:
    return cache_root() / name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _record(src: Source) -> dict[str, Any]:
    """The source's fetch record, or {} (not fetched: fetched again) where there is none or it cannot be read — a
    crash while it was written, an edit by hand. A traceback from every plan, run and `fetch --list` named no file."""
    path = source_dir(src.name) / FETCHED
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("%s: unreadable (%s); the source counts as not fetched", path, type(exc).__name__)
        return {}
    files = record.get("files", {}) if isinstance(record, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(meta, dict) and isinstance(meta.get("size"), int) and not isinstance(meta["size"], bool)
            and isinstance(meta.get("sha256", ""), str) for meta in files.values()):
        log.warning("%s: not a fetch record; the source counts as not fetched", path)
        return {}
    return record


# Cached files whose sha256 this process has matched with the record, as (path, size, mtime): hashing every file
# on every use would cost a read of the whole source each time; once per process is cheap and still catches a file
# changed in place (same size) between runs.
_HASHED: set[tuple[str, int, int]] = set()


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def _write_record(src: Source, record: dict[str, Any]) -> None:
    folder = source_dir(src.name)
    tmp = folder / f".{FETCHED}.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename, as the files it records
    os.replace(tmp, folder / FETCHED)
    for name in record.get("files") or {}:  # hashed just now, on the way in
        if (folder / name).is_file():
            _HASHED.add(_stat_key(folder / name))


def cached_files(src: Source) -> dict[str, Path] | None:
    """The cached files of a source (relative name → path) when every one is there and matches its record, and the
    record matches the manifest's pins (sha256 and size; a Hugging Face source's revision), else None. The size is
    compared on every call, the sha256 once per process.

    Raises:
        FetchError: a cached file has its recorded size but not its recorded sha256 (changed in the cache).
    """
    record = _record(src)
    files = record.get("files") or {}
    if not files:
        return None
    if src.hf_dataset is not None and src.revision and record.get("revision") != src.revision:
        return None  # fetched at another revision than the manifest pins now
    pins = {f.name: f for f in src.files if f.name and f.pinned}
    folder = source_dir(src.name)
    out = {}
    for name, meta in files.items():
        pin = pins.get(name)
        if pin is not None and (meta.get("sha256") != pin.sha256 or meta.get("size") != pin.size):
            # Recorded for another version than the manifest pins now (a manifest updated since, or a cache copied
            # from elsewhere): its record is no proof of this one.
            return None
        path = folder / name
        if not path.is_file() or path.stat().st_size != meta["size"]:
            return None
        key = _stat_key(path)
        if key not in _HASHED and meta.get("sha256"):
            digest = sha256_of(path)
            if digest != meta["sha256"]:
                raise FetchError(f"source {src.name}: the cached {name} changed since it was fetched (sha256 "
                                 f"{meta['sha256']} recorded, {digest} now): delete {path} and run `python "
                                 f"engine/run.py fetch {src.name}` to fetch it again")
            _HASHED.add(key)
        out[name] = path
    if src.hf_dataset is None and set(out) != {f.name for f in src.files}:
        return None
    return out


def main_file(src: Source, files: dict[str, Path]) -> Path:
    """The file the source's loader reads (`main`, a name or a glob of the cached files)."""
    matches = sorted(name for name in files if fnmatch.fnmatch(name, src.main))
    if not matches:
        raise FetchError(f"source {src.name}: no cached file matches {src.main!r} (have: {sorted(files)})")
    if len(matches) > 1:
        # The loader reads one file: the first of several shards would be a part of the benchmark, unsaid.
        raise FetchError(f"source {src.name}: {len(matches)} cached files match {src.main!r} ({', '.join(matches)}) "
                         "and its loader reads one: the dataset is now split in shards this manifest does not "
                         "expect; join them into one file and name it in prompts.path")
    return files[matches[0]]


def _verify(src: Source, f: SourceFile, path: Path, *, checked: str | None = None,
            deleted: str = "the downloaded copy was deleted from the cache") -> str:
    """Check size and sha256 against the manifest (pinned files); return the sha256. A mismatch deletes `path` (a
    copy in the cache, never the user's file) and says so with `deleted`; `checked` names the file the copy came
    from, where that is not the source's own file name."""
    size = path.stat().st_size
    digest = sha256_of(path)
    label = f"{f.name}: {checked}" if checked else f.name
    if f.size is not None and size != f.size:
        path.unlink(missing_ok=True)
        raise FetchError(f"source {src.name}: {label}: expected {f.size} bytes, got {size} (sha256 {digest}); "
                         f"{deleted}")
    if f.sha256 is not None and digest != f.sha256:
        path.unlink(missing_ok=True)
        raise FetchError(f"source {src.name}: {label}: sha256 mismatch — expected {f.sha256}, got {digest}; "
                         f"{deleted}")
    return digest


def _download(url: str, target: Path, progress: Callable[[int, int | None], None] | None,
              size: int | None = None, limit: str = "the manifest pins") -> None:
    """HTTP(S) GET into target.part, resuming from its length with a Range request; renamed to `target` at the end.
    `size`: the bytes the manifest pins (or, as `limit` then says, a cap); a server that says or sends more is
    stopped there and the partial file deleted (what it sent was written to the cache whole before, then refused by
    its size)."""
    import httpx

    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as response:
            if response.status_code == 416:  # the partial file already holds everything
                os.replace(part, target)
                return
            if response.status_code not in (200, 206):
                raise FetchError(f"GET {url}: HTTP {response.status_code}")
            if response.status_code == 200:  # no range support: start over
                have = 0
            total = response.headers.get("content-length")
            total = int(total) + have if total is not None and total.isdigit() else None
            if size is not None and total is not None and total > size:
                part.unlink(missing_ok=True)
                raise FetchError(f"GET {url}: the server sends {total} bytes, {limit} {size}")
            with open(part, "ab" if have else "wb") as out:
                done = have
                for chunk in response.iter_bytes():  # as it arrives: a dropped connection keeps what came
                    if size is not None and done + len(chunk) > size:
                        out.close()
                        part.unlink(missing_ok=True)
                        raise FetchError(f"GET {url}: more than the {size} bytes {limit}")
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
    except httpx.HTTPError as exc:
        raise FetchError(f"GET {url}: {type(exc).__name__}: {exc} (rerun `fetch` to resume from "
                         f"{part.stat().st_size if part.exists() else 0} bytes)") from None
    os.replace(part, target)


# A workbook is a zip of XML parts, parsed before the CSV made from it can be verified (the manifest pins the CSV):
# its parts may not inflate past this (MacGyver's largest inflates to a few MB), nor inflate more than 100-fold.
MAX_WORKBOOK_BYTES = 256 * 2**20
MAX_WORKBOOK_RATIO = 100
# A workbook the manifest does not pin (download_size) is still not downloaded past this: it is parsed before
# anything verifies it (MacGyver's are 0.6 MB and 0.1 MB, and pinned).
MAX_WORKBOOK_DOWNLOAD = 64 * 2**20


def xlsx_to_csv(xlsx: Path, csv_path: Path) -> None:
    """The one sheet of a workbook as CSV: header kept, fully empty rows dropped, cell values unchanged.

    The download is parsed before anything verifies it, so: its zip is measured first (no zip bomb), and openpyxl
    parses only with defusedxml installed (a declared dependency; no entity expansion or external entities)."""
    import csv
    import zipfile

    try:
        import openpyxl
        from openpyxl.xml import DEFUSEDXML
    except ImportError as exc:
        raise FetchError("converting an Excel workbook needs openpyxl (pip install openpyxl), or import the CSV "
                         "with `fetch --from DIR`") from exc
    if not DEFUSEDXML:
        raise FetchError("converting a downloaded Excel workbook needs defusedxml (pip install defusedxml: openpyxl "
                         "then parses its XML safely), or import the CSV with `fetch --from DIR`")
    try:
        with zipfile.ZipFile(xlsx) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"{xlsx}: not a readable Excel workbook ({exc}); delete it and fetch again") from None
    inflated = sum(p.file_size for p in parts)
    packed = max(1, sum(p.compress_size for p in parts))
    if inflated > MAX_WORKBOOK_BYTES or inflated > MAX_WORKBOOK_RATIO * packed:
        raise FetchError(f"{xlsx}: its parts inflate to {inflated:,} bytes from {packed:,} — not the workbook the "
                         "manifest names; it was not opened (delete it and fetch again)")
    try:
        # Read-only mode parses the sheet as it is iterated: a broken part fails in the loop, not at the load.
        book = openpyxl.load_workbook(xlsx, read_only=True, data_only=True)
        with open(csv_path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            for row in book.worksheets[0].iter_rows(values_only=True):
                if all(v is None or v == "" for v in row):
                    continue
                writer.writerow(["" if v is None else v for v in row])
    except Exception as exc:  # openpyxl raises zipfile, KeyError, IndexError, defusedxml's and its own errors
        csv_path.unlink(missing_ok=True)
        raise FetchError(f"{xlsx}: not a readable Excel workbook ({type(exc).__name__}: {str(exc)[:200]}); delete "
                         "it and fetch again") from None


def _progress_bar(label: str):
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int | None) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit="B", unit_scale=True, leave=False)
            bar["last"] = 0
        bar["bar"].update(done - bar["last"])
        bar["last"] = done

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


# Lock files live beside the source folders, not in them: `fetch --from` with a wrong folder leaves no source folder
# behind, and a source folder deleted by hand (as errors advise) never takes a lock another process holds with it.
LOCKS = ".locks"
_LOCAL = threading.local()  # the locks this thread holds: fetch, called by ensure under its lock, takes it again


class _NoLock(FetchError):
    """The lock file could not be created (a cache this user cannot write)."""


def _lock_path(name: str) -> Path:
    return cache_root() / LOCKS / f"{name}.lock"


@contextlib.contextmanager
def _source_lock(name: str) -> Iterator[None]:
    """Hold the source's lock (flock, exclusive): two processes fetching one source wrote the same <file>.part and
    both failed. Re-entrant within a thread; released when the process ends, however it ends."""
    path = _lock_path(name)
    held = _LOCAL.__dict__.setdefault("held", set())
    if str(path) in held:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # "a": never truncates a file another process holds
    except OSError as exc:
        raise _NoLock(f"source {name}: cannot create the lock file {path} ({exc.strerror or exc}); is the cache "
                      f"writable? (TASKDIV_CACHE sets another)") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("source %s: another process is fetching it; waiting for it to finish", name)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        held.add(str(path))
        try:
            yield
        finally:
            held.discard(str(path))  # closing the handle releases the lock


def _same_bytes(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    return bool(old) and old.get("sha256") == new["sha256"] and old.get("size") == new["size"]


def _entry(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A file's record entry: where its bytes are those recorded before, what the earlier entry said (imported from
    where, which pattern chose it) stays beside what this fetch adds; else the new entry alone."""
    return {**old, **new} if _same_bytes(old, new) else new


def fetched_record(src: Source) -> dict[str, Any]:
    """What .fetched.json says of the source ({} where nothing readable): files, revision, where they came from."""
    return _record(src)


def count_rows(path: Path) -> int | None:
    """The rows of a .jsonl (non-blank lines), .csv (records after the header: a cell may span lines) or .parquet
    file (from its footer), or None for another format or a file that cannot be read so."""
    import csv

    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            with open(path, "rb") as f:
                return sum(1 for line in f if line.strip())
        if suffix == ".csv":
            from engine.inputs.loaders.common import CSV_FIELD_LIMIT

            # As the loaders read it: a long conversation in one cell is a row (the csv module's setting, raised
            # only, the way read_table raises it).
            csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
            with open(path, newline="", encoding="utf-8") as f:
                return max(0, sum(1 for _ in csv.reader(f)) - 1)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # a count for the summary only; the loader names what is wrong with the file
        return None
    return None


def fetch(name: str, *, progress: bool = True) -> dict[str, Path]:
    """Download, verify and cache a source (files already cached and verified are kept); return its files."""
    src = source(name)
    cached = cached_files(src)
    if cached is not None:
        return cached
    with _source_lock(name):
        # Another process may have fetched it while this one waited for the lock: its verified files are used.
        cached = cached_files(src)
        if cached is not None:
            return cached
        folder = source_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        if src.hf_dataset is not None:
            return _fetch_hf(src)
        recorded = _record(src).get("files") or {}
        record: dict[str, Any] = {"source": name, "files": {}}
        for f in src.files:
            target = folder / f.name
            if target.is_file() and f.pinned and target.stat().st_size == f.size and sha256_of(target) == f.sha256:
                entry = {"sha256": f.sha256, "size": f.size, "url": f.url}
                record["files"][f.name] = _entry(recorded.get(f.name), entry)
                continue
            update, close = _progress_bar(f"{name}/{f.name}") if progress else (None, lambda: None)
            try:
                if f.convert == "xlsx-to-csv":
                    _fetch_workbook(src, f, folder, update)
                else:
                    _download(f.url, target, update, f.size if f.pinned else None)
            finally:
                close()
            digest = _verify(src, f, target)
            entry = {"sha256": digest, "size": target.stat().st_size, "url": f.url}
            record["files"][f.name] = _entry(recorded.get(f.name), entry)
        _write_record(src, record)
        return cached_files(src) or {}


def _fetch_workbook(src: Source, f: SourceFile, folder: Path, update: Callable | None) -> None:
    """Download a workbook, check it against its pins (download_size, download_sha256) before it is parsed, convert
    it to the CSV `f` names; the workbook is deleted once converted."""
    workbook = folder / Path(f.url).name
    if f.download_size is not None:
        _download(f.url, workbook, update, f.download_size)
    else:
        _download(f.url, workbook, update, MAX_WORKBOOK_DOWNLOAD, "an unpinned workbook may have")
    pins = SourceFile(name=f.name, sha256=f.download_sha256, size=f.download_size)
    _verify(src, pins, workbook, checked=f"the downloaded workbook {workbook.name}")
    tmp = folder / f".{f.name}.tmp"
    xlsx_to_csv(workbook, tmp)
    os.replace(tmp, folder / f.name)
    workbook.unlink(missing_ok=True)


def _listing(files: list[str], shown: int = 8) -> str:
    if not files:
        return "it lists no files"
    more = f" … ({len(files)} files)" if len(files) > shown else ""
    return "it has " + ", ".join(files[:shown]) + more


def _fetch_hf(src: Source) -> dict[str, Path]:
    """Download a Hugging Face dataset's files at the manifest's revision, else at the revision recorded by an
    earlier fetch (a file gone from the cache comes back as it was, under the name it had), else at the hub's current
    one, recorded; of a file's alternative patterns, the first matching a file of the repository is fetched."""
    from huggingface_hub import HfApi, snapshot_download

    folder = source_dir(src.name)
    # Stripped as huggingface_hub strips its own (a token ending in \r from a CRLF .env file was refused in a message
    # quoting it), and scrubbed from the message below; actors.hub.hf_token does the same for models.
    token = (os.environ.get("HF_TOKEN") or "").strip() or None
    if token and any(not 33 <= ord(c) <= 126 for c in token):
        raise FetchError("the environment variable HF_TOKEN holds a character that cannot go in an HTTP header: set "
                         "it to the token alone")
    previous = _record(src)
    if previous.get("hf_dataset") not in (None, src.hf_dataset) or (
            src.revision and previous.get("revision") not in (None, src.revision)):
        previous = {}  # another dataset, or another revision than the manifest pins: the record says nothing here
    recorded = previous.get("files") or {}

    def failed(exc: Exception) -> FetchError:
        text = str(exc).replace(token, "<redacted>") if token else str(exc)
        return FetchError(f"source {src.name}: fetching the Hugging Face dataset {src.hf_dataset} failed "
                          f"({type(exc).__name__}: {text[:300]})")

    repo_files = None
    try:
        revision = src.revision or previous.get("revision")
        if not recorded or revision is None:
            at = {"revision": revision} if revision else {}  # none: the hub's current revision
            info = HfApi().dataset_info(src.hf_dataset, token=token, **at)
            revision = revision or info.sha
            repo_files = sorted(s.rfilename for s in info.siblings or [])
    except Exception as exc:
        raise failed(exc) from None
    if recorded:
        wanted = sorted(recorded)  # the files the first fetch chose, by name: the same alternative, the same shards
    else:
        wanted = []
        for f in src.files:
            choices = f.patterns or (f.name,)
            chosen = next((p for p in choices if any(fnmatch.fnmatch(r, p) for r in repo_files)), None)
            if chosen is None:
                raise FetchError(f"source {src.name}: {src.hf_dataset} at revision {revision} has no file matching "
                                 f"{' or '.join(repr(p) for p in choices)}; {_listing(repo_files)}")
            wanted.append(chosen)
    try:
        snapshot_download(src.hf_dataset, repo_type="dataset", revision=revision, allow_patterns=wanted,
                          local_dir=str(folder), token=token)
    except Exception as exc:
        raise failed(exc) from None
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        pattern = next((p for p in wanted if fnmatch.fnmatch(rel, p)), None)
        if path.is_file() and pattern is not None and not rel.startswith("."):
            files[rel] = {"sha256": sha256_of(path), "size": path.stat().st_size}
            if not recorded:
                files[rel]["pattern"] = pattern
    if not files and not recorded:
        raise FetchError(f"source {src.name}: {src.hf_dataset} at revision {revision}: no file matching {wanted} "
                         "came down")
    changed = [f"{rel} (sha256 {meta['sha256']} recorded, {files[rel]['sha256'] if rel in files else 'absent'} "
               "now)" for rel, meta in sorted(recorded.items())
               if rel not in files or (meta.get("sha256") and files[rel]["sha256"] != meta["sha256"])]
    changed += [f"{rel} (new)" for rel in sorted(set(files) - set(recorded))] if recorded else []
    if changed:  # the record stays: the data the earlier runs used is the one the cache stands for
        raise FetchError(f"source {src.name}: {src.hf_dataset} at revision {revision} no longer matches what was "
                         f"recorded at the first fetch: {'; '.join(changed)}. To take the dataset as it is now, "
                         f"delete {folder} and run `python engine/run.py fetch {src.name}` again")
    files = {rel: _entry(recorded.get(rel), meta) for rel, meta in files.items()}
    _write_record(src, {"source": src.name, "hf_dataset": src.hf_dataset, "revision": revision, "files": files})
    return cached_files(src) or {}


def import_from(name: str, directory: Path) -> dict[str, Path]:
    """Import a source's files from a folder the user has (DIR/<name>/<file>, DIR/<file>, or anywhere below DIR),
    verified like a download; for an unpinned source the hashes are recorded. What the record said of a file whose
    bytes are unchanged is kept (a Hugging Face source's revision among it)."""
    src = source(name)
    with _source_lock(name):
        return _import_from(src, Path(directory))


def _import_from(src: Source, directory: Path) -> dict[str, Path]:
    name = src.name
    folder = source_dir(name)
    previous = _record(src)
    if previous.get("hf_dataset") not in (None, src.hf_dataset):
        previous = {}
    recorded = previous.get("files") or {}
    imported_from = str(directory.resolve())
    record: dict[str, Any] = {"source": name, "files": {}}
    wanted = [(f, f.name) for f in src.files if f.name] or [(f, None) for f in src.files]
    for f, file_name in wanted:
        if file_name is None:  # patterns of a Hugging Face dataset: every file below DIR/<name> matching the first
            base = directory / name if (directory / name).is_dir() else directory
            below = [p for p in sorted(base.rglob("*")) if p.is_file()]
            found, chosen = [], None
            for chosen in f.patterns:  # alternatives, in the manifest's order, as a fetch takes them
                found = [p for p in below if fnmatch.fnmatch(p.relative_to(base).as_posix(), chosen)]
                if found:
                    break
            if not found:
                raise NotInFolder(f"source {name}: no file matching {' or '.join(repr(p) for p in f.patterns)} "
                                  f"below {base}")
            for p in found:
                rel = p.relative_to(base).as_posix()
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_atomic(p, target)
                record["files"][rel] = {"sha256": sha256_of(target), "size": target.stat().st_size,
                                        "pattern": chosen, "imported": str(p), "imported_from": imported_from}
            continue
        # Names like test.jsonl recur across datasets: every copy below DIR is a candidate, the likeliest first,
        # and the first that verifies is taken.
        candidates = [c for c in dict.fromkeys([directory / name / file_name, directory / file_name,
                                                *sorted(directory.rglob(file_name))]) if c.is_file()]
        if not candidates:
            raise NotInFolder(f"source {name}: {file_name} not found in {directory} (looked in {directory / name}, "
                              f"{directory} and below)")
        folder.mkdir(parents=True, exist_ok=True)  # only once a file was found: a wrong folder leaves no trace
        target = folder / file_name
        tmp = target.with_name(f".{target.name}.import")
        rejected = []
        for found in candidates:
            shutil.copyfile(found, tmp)
            try:  # checked before it replaces anything: a cached copy that verified stays until a better one does
                digest = _verify(src, f, tmp, checked=str(found),
                                 deleted=f"its copy was deleted from the cache ({found} itself is untouched)")
            except FetchError as exc:
                rejected.append(str(exc))
                continue
            os.replace(tmp, target)
            break
        else:
            if len(rejected) == 1:
                raise FetchError(rejected[0])
            raise FetchError(f"source {name}: none of the {len(rejected)} files named {file_name} below {directory} "
                             f"verifies — " + "; ".join(rejected))
        record["files"][file_name] = {"sha256": digest, "size": target.stat().st_size, "imported": str(found),
                                      "imported_from": imported_from}
    unchanged = bool(recorded) and set(recorded) == set(record["files"]) and all(
        _same_bytes(recorded[rel], meta) for rel, meta in record["files"].items())
    record["files"] = {rel: _entry(recorded.get(rel), meta) for rel, meta in record["files"].items()}
    if src.hf_dataset is not None:
        # The revision the manifest pins is the one these files stand for; unpinned, the revision an earlier fetch
        # recorded still holds where the bytes are that fetch's, and is not known where they differ.
        revision = src.revision or (previous.get("revision") if unchanged else None)
        record.update({"hf_dataset": src.hf_dataset, "revision": revision})
    _write_record(src, record)
    return cached_files(src) or {}


def _copy_atomic(src_path: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(src_path, tmp)
    os.replace(tmp, target)


def ensure(name: str, *, offline: bool, progress: bool = True) -> Path:
    """The main file of a cached source, fetched first when hub access is on. Not cached, it waits for a fetch of
    the source another process is making (then uses what it fetched).

    Raises:
        FetchError: offline and not cached — with the exact command to run.
    """
    src = source(name)
    cached = cached_files(src)
    # Offline, a source whose lock file is absent was never being fetched here (a fetch makes it first): nothing to
    # wait for, and nothing is written to the cache of a run that only reads it.
    if cached is None and (not offline or _lock_path(name).exists()):
        try:
            with _source_lock(name):
                cached = cached_files(src)
                if cached is None and not offline:
                    cached = fetch(name, progress=progress)
        except _NoLock:
            if not offline:
                raise
    if cached is None:
        raise NotCached(f"source {name} is not in the cache ({source_dir(name)}) and this run is offline "
                        f"(models.offline): run `python engine/run.py fetch {name}` where there is network, "
                        f"or `python engine/run.py fetch {name} --from DIR` with files you have", name)
    return main_file(src, cached)


def source_table(directory: Path | None = None) -> str:
    """The README's table of sources, generated from the manifests."""
    lines = ["| source | what | licence | files | pinned | used in the paper |", "|---|---|---|---|---|---|"]
    for src in sources(directory).values():
        size = src.size
        files = ", ".join(f.name or " or ".join(f.patterns) for f in src.files) + (
            f" ({size / 1e6:.1f} MB)" if size else "")
        origin = f"[{src.title}]({src.homepage})"
        pinned = "sha256 + size" if src.pinned else "recorded at first fetch"
        lines.append(f"| `{src.name}` | {origin} | {src.license} | {files} | {pinned} | {src.paper} |")
    return "\n".join(lines)
