"""`python engine/run.py fetch [NAME …]`: download, verify and cache the public sources (engine.inputs.fetch).

    python engine/run.py fetch --list                          every source: licence, size, pinned, cached
    python engine/run.py fetch simpleqa math500                download into the cache (resumable, verified)
    python engine/run.py fetch --from ../shared/datasets       import files you have (no network), verified
"""

from __future__ import annotations

import argparse
from pathlib import Path


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
            cached = "cached" if fetch.cached_files(src) is not None else "not cached"
            pinned = "pinned" if src.pinned else "not pinned"
            print(f"  {name:<22} {cached:<11} {pinned:<11} {size:<13} {src.license}")
        return 0
    names = args.names or list(known)
    failed = []
    for name in names:
        src = fetch.source(name)
        try:
            files = fetch.import_from(name, args.from_dir) if args.from_dir else fetch.fetch(name)
        except fetch.FetchError as exc:
            if not args.names and args.from_dir:  # importing everything: a source the folder lacks is reported
                failed.append(f"{name}: {exc}")
                continue
            raise
        pinned = "verified (sha256 + size)" if src.pinned else "recorded (sha256 + size at first fetch)"
        print(f"{name}: {len(files)} files in {fetch.source_dir(name)} — {pinned}")
    for line in failed:
        print(f"not imported: {line}")
    return 0 if not failed or args.names else 0
