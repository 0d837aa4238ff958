"""`python engine/run.py explore RUN_DIR [--where COLUMN=VALUE …]`: write an explorer page for a finished run, or
for a subset of its groups (engine.report.explore). Every run already writes RUN_DIR/explore.html; this command is
for runs too large for one page, or for sharing a slice."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import TaskdivError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("explore", help="write an explorer page (explore.html) for a run or a subset of it",
                              description=__doc__)
    p.add_argument("run_dir", type=Path, help="a finished run directory")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep groups whose COLUMN (of the groups table: model, strategy, category, prompt_id, …) "
                        "equals VALUE; repeat a column for any of several values, several columns for all of them")
    p.add_argument("--out", type=Path, default=None, help="where to write (default: RUN_DIR/explore.html, or "
                                                          "RUN_DIR/explore-<filters>.html with --where)")
    p.add_argument("--max-groups", type=int, default=None, help="most groups on the page (default 10,000)")
    return p


def cmd_explore(args: argparse.Namespace) -> int:
    from engine.cli.common import output_path
    from engine.execution.results import read_run
    from engine.report.explore import MAX_GROUPS, matches, write_explorer

    where: dict[str, list[str]] = {}
    for item in args.where:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise TaskdivError(f"--where {item!r}: expected COLUMN=VALUE")
        where.setdefault(column.strip(), []).append(value)
    if args.max_groups is not None and args.max_groups < 1:
        raise TaskdivError(f"--max-groups must be >= 1, got {args.max_groups}")
    out = output_path(args.out) if args.out is not None else None
    result, _ = read_run(args.run_dir)
    columns = set(result.tables["groups"].column_names)
    unknown = sorted(set(where) - columns)
    if unknown:
        raise TaskdivError(f"--where: no column {', '.join(unknown)} in the groups table (columns: "
                           f"{', '.join(sorted(columns))})")
    groups = result.tables["groups"].to_pylist()
    if where and not any(matches(g, where) for g in groups):
        # An empty page written with exit 0 read as "nothing there" for a misspelt value.
        seen = "; ".join(f"{k}: " + ", ".join(sorted({str(g.get(k)) for g in groups})[:20]) for k in where)
        wanted = " and ".join(f"{k}={'|'.join(v)}" for k, v in where.items())
        raise TaskdivError(f"--where: no group has {wanted} "
                           f"(values there: {seen})")
    if out is None:
        suffix = "-".join(f"{k}-{'+'.join(v)}" for k, v in sorted(where.items()))
        safe = "".join(ch if ch.isalnum() or ch in "-+_." else "_" for ch in suffix)[:120]
        out = Path(args.run_dir) / (f"explore-{safe}.html" if safe else "explore.html")
    path = write_explorer(result.tables, args.run_dir, where=where or None,
                          max_groups=args.max_groups or MAX_GROUPS, out=out)
    print(path)
    return 0
