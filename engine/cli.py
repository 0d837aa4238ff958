"""Command line: `run` (the default), and the tools beside it."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from engine.errors import TaskdivError

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"

COMMANDS = ("run", "compare", "calibrate", "agreement")


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    """--set key=value pairs; values are read as YAML scalars (3 → int, true → bool, null → None)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TaskdivError(f"--set {item!r}: expected key=value, e.g. --set sampling.max_tokens=64")
        out[key.strip()] = yaml.safe_load(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engine/run.py", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run an audit (the default command)")
    run.add_argument("--config", type=Path, default=None,
                     help=f"YAML run config (default: the built-in demo, {DEMO_CONFIG.relative_to(DEMO_CONFIG.parents[1])})")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, dotted for nested keys (repeatable)")
    run.add_argument("--run-dir", default=None, help="override run_dir")
    run.add_argument("--executor", choices=["ray", "local"], default=None, help="override execution.executor")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    from engine import agreement, calibrate
    from engine.compare import add_compare_parser

    add_compare_parser(sub)
    calibrate.add_parser(sub)
    agreement.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compare":
            from engine.compare import cmd_compare

            return cmd_compare(args)
        if args.command == "calibrate":
            from engine.calibrate import cmd_calibrate

            return cmd_calibrate(args)
        if args.command == "agreement":
            from engine.agreement import cmd_agreement

            return cmd_agreement(args)
    except TaskdivError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.pipeline import Pipeline
    from engine.report import write_report

    overrides = _parse_set(args.set)
    if args.run_dir:
        overrides["run_dir"] = args.run_dir
    if args.executor:
        overrides["execution.executor"] = args.executor
    config = load_config(args.config or DEMO_CONFIG, overrides)
    started = time.time()
    pipeline = Pipeline(config, progress=not args.quiet)
    try:
        result = pipeline.run()
    finally:
        pipeline.close()
    paths = write_report(result, config)
    print(summary(result, paths, time.time() - started))
    failed = Pipeline.failed_shards(result)
    if failed:
        total = sum(len(v) for v in failed.values())
        print(f"\n{total} shards failed for good (their rows are missing from the tables); rerun the same command "
              "to compute them:", file=sys.stderr)
        for stage, shards in failed.items():
            reason = next(iter(shards.values()))
            print(f"  {stage}: {len(shards)} shards — {reason}", file=sys.stderr)
        return 3
    return 0


def summary(result, paths: dict[str, Path], wall_s: float) -> str:
    groups = result.tables["groups"]
    lines = [
        "",
        f"taskdiv run finished in {wall_s:.0f} s — {result.run_dir}",
        f"  prompts: {result.tables['prompts'].num_rows}   groups: {groups.num_rows}   "
        f"responses: {result.tables['responses'].num_rows}   judgments: {result.tables['judgments'].num_rows}",
    ]
    for rec in result.stages:
        reused = f" ({rec.units_reused}/{rec.units} shards reused)" if rec.units_reused else ""
        lines.append(f"  {rec.stage:<28} {rec.rows:>6} rows  {rec.wall_s:7.1f} s{reused}")
    if result.skipped_inputs:
        lines.append(f"  skipped input rows: {len(result.skipped_inputs)} (listed in the report)")
    lines.append(f"  report: {paths['html']}  (also {Path(paths['markdown']).name}, report.json, run_stats.json)")
    return "\n".join(lines)
