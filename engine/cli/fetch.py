"""`python engine/run.py fetch [NAME …]`: download, verify and cache the public sources (engine.inputs.fetch).

    python engine/run.py fetch --list                          every source: licence, size, pinned, cached
    python engine/run.py fetch simpleqa math500                download into the cache (resumable, verified)
    python engine/run.py fetch --from ../shared/datasets       import files you have (no network), verified

Every source named (default: all) is tried; the failures are listed at the end, one line each starting with the
source's name, and the exit code is then 2. Importing every source from a folder, a source the folder has no files
of is listed as not imported, which is not a failure. Each source fetched is told with its files' rows (JSONL,
CSV, Parquet) and, for a Hugging Face source, the revision recorded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.inputs.fetch import Source


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="download, verify and cache the public data sources")
    p.add_argument("names", nargs="*", help="sources to fetch (default: every source; see --list)")
    p.add_argument("--list", action="store_true", help="list the sources, their licence and size, and what is cached")
    p.add_argument("--from", dest="from_dir", type=Path, default=None,
                   help="import the files from this folder instead of downloading them (verified the same way)")
    p.add_argument("--table", action="store_true", help="print the README's source table (from the manifests)")


def cmd_fetch(args: argparse.Namespace) -> int:
    from engine.inputs import fetch

    known = fetch.sources()
    if args.table:
        print(fetch.source_table())
        return 0
    if args.list:
        print(f"cache: {fetch.cache_root()}")
        for name, src in known.items():
            size = f"{src.size / 1e6:.1f} MB" if src.size else "size unknown"
            try:
                cached = "cached" if fetch.cached_files(src) is not None else "not cached"
            except fetch.FetchError:  # a cached file whose hash changed: `fetch NAME` says which and what to do
                cached = "changed"
            pinned = "pinned" if src.pinned else "not pinned"
            print(f"  {name:<22} {cached:<11} {pinned:<11} {size:<13} {src.license}")
        return 0
    names = args.names or list(known)
    if args.from_dir is not None and not args.from_dir.is_dir():
        print(f"error: --from {args.from_dir}: no such folder", file=sys.stderr)
        return 2
    absent, failed = [], []
    # Every source is tried, whatever became of the one before: one gated dataset or dead link must not keep the
    # others out of the cache. Failures are told together at the end.
    for name in names:
        try:
            src = fetch.source(name)
            files = fetch.import_from(name, args.from_dir) if args.from_dir else fetch.fetch(name)
        except fetch.NotInFolder as exc:
            # Importing everything from a folder: a source the folder has no files of is reported, not a failure
            # (a folder of the release files lacks the Hugging Face sources). Named, it is a failure.
            (failed if args.names else absent).append(f"{name}: {_reason(name, exc)}")
            continue
        except fetch.FetchError as exc:
            failed.append(f"{name}: {_reason(name, exc)}")
            continue
        pinned = "verified (sha256 + size)" if src.pinned else "recorded (sha256 + size at first fetch)"
        print(f"{name}: {len(files)} file{'' if len(files) == 1 else 's'} in {fetch.source_dir(name)} — {pinned}"
              + _details(src, files))
    for line in absent:
        print(f"not imported: {line}")
    if absent and len(absent) == len(names):  # a folder with none of the files: most likely the wrong folder
        failed.append(f"--from {args.from_dir}: none of the sources' files is in this folder or below it")
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 2 if failed else 0  # 2: what the command line returns for any other error (engine.cli)


def _details(src: Source, files: dict[str, Path]) -> str:
    """What was fetched, beyond the file count: a Hugging Face source's revision, and each file's rows where the
    format tells them cheaply (a different count than the paper's is seen here, not in the middle of a run)."""
    from engine.inputs import fetch

    parts = []
    if src.hf_dataset is not None:
        revision = fetch.fetched_record(src).get("revision")
        parts.append(f"revision {revision}" if revision else "revision not known (imported, not pinned)")
    for rel, path in sorted(files.items()):
        rows = fetch.count_rows(path)
        if rows is not None:
            parts.append(f"{rel}: {rows:,} rows")
    return "".join(f"; {part}" for part in parts)


def _reason(name: str, exc: Exception) -> str:
    """The error without its own "source NAME: " opening, since the line already starts with the name."""
    return str(exc).removeprefix(f"source {name}: ")
