"""The public data sources the paper uses: fetched, verified and cached, like evaluation tools do.

Each source has a manifest in datasets/sources/<name>.yaml (data, not code): where it comes from (a release URL
per file, or a Hugging Face dataset id and revision), each file's sha256 and size where the source is pinned, its
licence, and how its rows become prompt records. `fetch` downloads a source into the user cache
($TASKDIV_CACHE, default the platform's cache dir + taskdiv, under datasets/<name>/):

- HTTPS files resume an interrupted transfer (an HTTP Range request from the partial file), show a progress bar,
  and are verified — size and sha256 — before an atomic rename; a mismatch deletes the partial file and is an
  error naming the source, the expected and the actual hash. A file the source ships as an Excel workbook is
  converted to the CSV the loaders read (`convert: xlsx-to-csv`), and the CSV is what is verified.
- Hugging Face datasets go through huggingface_hub (HF_TOKEN from the environment, never written anywhere). An
  unpinned revision is recorded at the first fetch with each file's sha256 (.fetched.json); a file that goes
  missing later is fetched again at that recorded revision, not the hub's current one, and must match its recorded
  hash, so the data never changes under a cached source.
- `--from DIR` imports files the user already has (a machine without network), verified the same way; of several
  files of one name below DIR, the first that verifies is taken.

Every cached file's size is checked against the record on every use, and its sha256 once per process (a file
changed in the cache is an error naming it, never read as the source).

A run whose config names a source uses the cached copy, fetching it first when hub access is on; offline and not
cached, it stops before any stage with the exact command to run.

Imports: engine.errors; httpx, huggingface_hub and openpyxl inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
    """One file of a source: `name` and `url` (a release file) or `pattern` (files of a Hugging Face dataset)."""

    name: str | None = None
    url: str | None = None
    pattern: str | None = None
    sha256: str | None = None
    size: int | None = None
    convert: str | None = None

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
        unknown = set(f) - {"name", "url", "pattern", "sha256", "size", "convert"}
        if unknown:
            raise FetchError(f"{path}: files[{k}].{sorted(unknown)[0]}: unknown key")
        if data.get("hf_dataset") is None and not (f.get("name") and f.get("url")):
            raise FetchError(f"{path}: files[{k}]: a release file needs name and url")
        if f.get("convert") not in (None, "xlsx-to-csv"):
            raise FetchError(f"{path}: files[{k}].convert: unknown conversion {f['convert']!r}")
        files.append(SourceFile(**f))
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
    import fnmatch

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
              size: int | None = None) -> None:
    """HTTP(S) GET into target.part, resuming from its length with a Range request; renamed to `target` at the end.
    `size`: the bytes the manifest pins; a server that says or sends more is stopped there and the partial file
    deleted (what it sent was written to the cache whole before, then refused by its size)."""
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
                raise FetchError(f"GET {url}: the server sends {total} bytes, the manifest pins {size}")
            with open(part, "ab" if have else "wb") as out:
                done = have
                for chunk in response.iter_bytes():  # as it arrives: a dropped connection keeps what came
                    if size is not None and done + len(chunk) > size:
                        out.close()
                        part.unlink(missing_ok=True)
                        raise FetchError(f"GET {url}: more than the {size} bytes the manifest pins")
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


def fetch(name: str, *, progress: bool = True) -> dict[str, Path]:
    """Download, verify and cache a source (files already cached and verified are kept); return its files."""
    src = source(name)
    cached = cached_files(src)
    if cached is not None:
        return cached
    folder = source_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    if src.hf_dataset is not None:
        return _fetch_hf(src)
    record = {"source": name, "files": {}}
    for f in src.files:
        target = folder / f.name
        if target.is_file() and f.pinned and target.stat().st_size == f.size and sha256_of(target) == f.sha256:
            record["files"][f.name] = {"sha256": f.sha256, "size": f.size, "url": f.url}
            continue
        update, close = _progress_bar(f"{name}/{f.name}") if progress else (None, lambda: None)
        try:
            if f.convert == "xlsx-to-csv":
                workbook = folder / (Path(f.url).name)
                _download(f.url, workbook, update)
                tmp = folder / f".{f.name}.tmp"
                xlsx_to_csv(workbook, tmp)
                os.replace(tmp, target)
                workbook.unlink(missing_ok=True)
            else:
                _download(f.url, target, update, f.size if f.pinned else None)
        finally:
            close()
        digest = _verify(src, f, target)
        record["files"][f.name] = {"sha256": digest, "size": target.stat().st_size, "url": f.url}
    _write_record(src, record)
    return cached_files(src) or {}


def _fetch_hf(src: Source) -> dict[str, Path]:
    """Download a Hugging Face dataset's files at the manifest's revision, else at the revision recorded by an
    earlier fetch (a file gone from the cache comes back as it was), else at the hub's current one, recorded."""
    from huggingface_hub import HfApi, snapshot_download

    folder = source_dir(src.name)
    # Stripped as huggingface_hub strips its own (a token ending in \r from a CRLF .env file was refused in a message
    # quoting it), and scrubbed from the message below; actors.hub.hf_token does the same for models.
    token = (os.environ.get("HF_TOKEN") or "").strip() or None
    if token and any(not 33 <= ord(c) <= 126 for c in token):
        raise FetchError("the environment variable HF_TOKEN holds a character that cannot go in an HTTP header: set "
                         "it to the token alone")
    patterns = [f.pattern or f.name for f in src.files]
    previous = _record(src)
    if previous.get("hf_dataset") not in (None, src.hf_dataset):
        previous = {}  # the manifest now names another dataset: the old record says nothing about this one
    recorded = previous.get("files") or {}
    try:
        revision = src.revision or previous.get("revision") or HfApi().dataset_info(src.hf_dataset, token=token).sha
        snapshot_download(src.hf_dataset, repo_type="dataset", revision=revision, allow_patterns=patterns,
                          local_dir=str(folder), token=token)
    except Exception as exc:
        text = str(exc).replace(token, "<redacted>") if token else str(exc)
        raise FetchError(f"source {src.name}: fetching the Hugging Face dataset {src.hf_dataset} failed "
                         f"({type(exc).__name__}: {text[:300]})") from None
    import fnmatch

    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and any(fnmatch.fnmatch(rel, p) for p in patterns) and not rel.startswith("."):
            files[rel] = {"sha256": sha256_of(path), "size": path.stat().st_size}
    if not files:
        raise FetchError(f"source {src.name}: {src.hf_dataset} has no file matching {patterns}")
    changed = [f"{rel} (sha256 {meta['sha256']} recorded, {files[rel]['sha256'] if rel in files else 'absent'} "
               "now)" for rel, meta in sorted(recorded.items())
               if rel not in files or (meta.get("sha256") and files[rel]["sha256"] != meta["sha256"])]
    changed += [f"{rel} (new)" for rel in sorted(set(files) - set(recorded))] if recorded else []
    if changed:  # the record stays: the data the earlier runs used is the one the cache stands for
        raise FetchError(f"source {src.name}: {src.hf_dataset} at revision {revision} no longer matches what was "
                         f"recorded at the first fetch: {'; '.join(changed)}. To take the dataset as it is now, "
                         f"delete {folder} and run `python engine/run.py fetch {src.name}` again")
    _write_record(src, {"source": src.name, "hf_dataset": src.hf_dataset, "revision": revision, "files": files})
    return cached_files(src) or {}


def import_from(name: str, directory: Path) -> dict[str, Path]:
    """Import a source's files from a folder the user has (DIR/<name>/<file>, DIR/<file>, or anywhere below DIR),
    verified like a download; for an unpinned source the hashes are recorded."""
    src = source(name)
    directory = Path(directory)
    folder = source_dir(name)
    record: dict[str, Any] = {"source": name, "imported_from": str(directory.resolve()), "files": {}}
    if src.hf_dataset is not None:  # the revision the manifest pins is the one these files stand for
        record.update({"hf_dataset": src.hf_dataset, "revision": src.revision})
    wanted = [(f, f.name) for f in src.files if f.name] or [(f, None) for f in src.files]
    for f, file_name in wanted:
        if file_name is None:  # a pattern of a Hugging Face dataset: every matching file below DIR/<name>
            import fnmatch

            base = directory / name if (directory / name).is_dir() else directory
            found = [p for p in sorted(base.rglob("*")) if p.is_file()
                     and fnmatch.fnmatch(p.relative_to(base).as_posix(), f.pattern)]
            if not found:
                raise NotInFolder(f"source {name}: no file matching {f.pattern!r} below {base}")
            for p in found:
                rel = p.relative_to(base).as_posix()
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_atomic(p, target)
                record["files"][rel] = {"sha256": sha256_of(target), "size": target.stat().st_size}
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
        record["files"][file_name] = {"sha256": digest, "size": target.stat().st_size, "imported": str(found)}
    _write_record(src, record)
    return cached_files(src) or {}


def _copy_atomic(src_path: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(src_path, tmp)
    os.replace(tmp, target)


def ensure(name: str, *, offline: bool, progress: bool = True) -> Path:
    """The main file of a cached source, fetched first when hub access is on.

    Raises:
        FetchError: offline and not cached — with the exact command to run.
    """
    src = source(name)
    cached = cached_files(src)
    if cached is None:
        if offline:
            raise NotCached(f"source {name} is not in the cache ({source_dir(name)}) and this run is offline "
                            f"(models.offline): run `python engine/run.py fetch {name}` where there is network, "
                            f"or `python engine/run.py fetch {name} --from DIR` with files you have", name)
        cached = fetch(name, progress=progress)
    return main_file(src, cached)


def source_table(directory: Path | None = None) -> str:
    """The README's table of sources, generated from the manifests."""
    lines = ["| source | what | licence | files | pinned | used in the paper |", "|---|---|---|---|---|---|"]
    for src in sources(directory).values():
        size = src.size
        files = ", ".join(f.name or f.pattern for f in src.files) + (f" ({size / 1e6:.1f} MB)" if size else "")
        origin = f"[{src.title}]({src.homepage})"
        pinned = "sha256 + size" if src.pinned else "recorded at first fetch"
        lines.append(f"| `{src.name}` | {origin} | {src.license} | {files} | {pinned} | {src.paper} |")
    return "\n".join(lines)
