"""`python engine/run.py compare RUN_A RUN_B`: paired differences B − A per category (engine.report.compare)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.common import output_path, terminal_text
from engine.errors import TaskdivError
from engine.report import compare


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `compare` subcommand to the CLI's subparsers.

    Args:
        subparsers: from ArgumentParser.add_subparsers().

    Returns:
        The subcommand's parser.
    """
    p = subparsers.add_parser("compare", help="compare two runs on the same prompts (B − A, per category)",
                              description=compare.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", type=Path, help="baseline run directory (A)")
    p.add_argument("run_b", type=Path, nargs="?", default=None,
                   help="run directory compared against it (B); leave out with --values")
    p.add_argument("--values", nargs=2, metavar=("A", "B"), default=None,
                   help="compare two values of RUN_A's own sweep (e.g. --values 0.5 1.0, or t=0.5,p=0.8 t=1,p=0.8 "
                        "when both settings are swept): B − A between the generators at those values")
    p.add_argument("--intersect", action="store_true",
                   help="compare the prompts (and generators) both runs have instead of refusing runs that differ")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: RUN_B/compare-vs-<name of RUN_A>)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def _slug(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".=-" else "_" for ch in value)


def cmd_compare(args: argparse.Namespace) -> int:
    """Run `compare`: print the verdicts and where the comparison was written.

    Args:
        args: parsed by the parser from `add_parser`.

    Returns:
        0 on success, 2 when the runs cannot be compared (the reason is printed to stderr).
    """
    try:
        if args.resamples < 1:
            raise compare.CompareError(f"--resamples must be >= 1, got {args.resamples}")
        if args.seed < 0:
            raise compare.CompareError(f"--seed must be >= 0, got {args.seed}")
        values = tuple(args.values) if args.values else None
        if values:
            default = Path(args.run_a) / f"compare-{_slug(values[1])}-vs-{_slug(values[0])}"
        else:
            default = Path(args.run_b or args.run_a) / f"compare-vs-{Path(args.run_a).resolve().name}"
        # Checked before the comparison: a file there, or a folder that cannot be written, was an OSError after it
        # (the default's run directory, where there is one: a missing run is compare_runs' to name).
        out = args.out or default
        if args.out or default.parent.is_dir():
            output_path(out, folder=True)
        c = compare.compare_runs(args.run_a, args.run_b, intersect=args.intersect, resamples=args.resamples,
                                 seed=args.seed, values=values)
        paths = compare.write_comparison(c, out)
    except TaskdivError as exc:
        print(f"error: {terminal_text(str(exc))}", file=sys.stderr)
        return 2
    print(f"B = {c['b']['label']} vs A = {c['a']['label']}: {c['paired_groups']} paired groups, "
          f"{c['prompts']['shared']} prompts, n = {c['n']}")
    for d in c["config_differences"]:
        print(f"  config: {d['key']}: {d['a']} → {d['b']}")
    for v in c["verdicts"]:
        print(f"  {v}")
    if c["small_model_judges"]["a"] or c["small_model_judges"]["b"]:
        print("  (judged by the 135M default model: these verdicts are not meaningful; see the comparison)")
    print(f"comparison: {paths['markdown']}")
    return 0
