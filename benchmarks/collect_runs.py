"""Collect the throughput of several runs from their run_stats.json files into one table.

    .venv/bin/python benchmarks/collect_runs.py runs/demo runs/cluster-a100 ...      (run directories or JSON files)
    .venv/bin/python benchmarks/collect_runs.py --stages runs/*                       one row per stage as well

Each run's report writes run_stats.json (schema 1, see engine.report.run_stats). Rates are over what a stage
computed in that run; a stage whose shards were all reused shows "–".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

SCHEMA = 1


def load(path: Path) -> dict[str, Any]:
    """run_stats.json of a run directory (or the file itself)."""
    file = path / "run_stats.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no run_stats.json (write the run's report first)")
    stats = json.loads(file.read_text(encoding="utf-8"))
    if stats.get("schema") == "records":  # the run's stage records alone (engine.execution.results.RunResult.records)
        raise ValueError(f"{file}: the run's stage records only, no throughput: write the run's report first")
    if stats.get("schema") != SCHEMA:
        raise ValueError(f"{file}: run_stats schema {stats.get('schema')!r}, this script reads schema {SCHEMA}")
    return stats


def _f(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _sum_rate(stages: list[dict], kind: str, amount: str, rate: str) -> float | None:
    """A kind's overall rate: its summed amount over its summed wall time, over stages that have the rate."""
    rated = [s for s in stages if s["kind"] == kind and s.get(rate) is not None]
    wall = sum(s["wall_s"] for s in rated)
    return sum(s[amount] for s in rated) / wall if rated and wall > 0 else None


def table(runs: Sequence[tuple[str, dict[str, Any]]], per_stage: bool = False) -> str:
    """Markdown tables: one row per run (and one per stage with per_stage).

    Args:
        runs: (label, run_stats) pairs.
        per_stage: add a table with one row per stage of each run.

    Returns:
        The Markdown text.
    """
    out = ["| run | executor | generators | judges | prompts | groups | wall s | peak MiB | sample tok/s | "
           "judge pairs/s | calls | retries | cost USD |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, s in runs:
        st = s["stages"]
        tot = s["totals"]
        out.append(
            f"| {label} | {s['executor']} | {', '.join(g['name'] for g in s['generators'])} | "
            f"{', '.join(j['name'] for j in s['judges'])} | {s['counts']['prompts']} | {s['counts']['groups']} | "
            f"{_f(s['wall_s'])} | {_f(s['peak_rss_bytes'] / 2**20, 0) if s['peak_rss_bytes'] else '–'} | "
            f"{_f(_sum_rate(st, 'sample', 'completion_tokens', 'completion_tokens_per_s'))} | "
            f"{_f(_sum_rate(st, 'judge', 'pairs_judged', 'pairs_per_s'))} | "
            f"{_f(tot['calls'], 0)} | {_f(tot['retries'], 0)} | {_f(tot['cost_usd'], 4)} |")
    if per_stage:
        out += ["", "| run | stage | shards | reused | rows | wall s | rows/s | tok/s | pairs/s | calls | retries |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for label, s in runs:
            for x in s["stages"]:
                out.append(
                    f"| {label} | {x['stage']} | {x['units']} | {x['units_reused']} | {x['rows']} | "
                    f"{_f(x['wall_s'])} | {_f(x['rows_per_s'], 2)} | {_f(x['completion_tokens_per_s'])} | "
                    f"{_f(x['pairs_per_s'], 2)} | {_f(x['calls'], 0)} | {_f(x['retries'], 0)} |")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or run_stats.json files")
    parser.add_argument("--stages", action="store_true", help="also one row per stage")
    args = parser.parse_args(argv)
    runs, errors = [], 0
    for path in args.runs:
        try:
            runs.append((path.name if path.is_dir() else path.parent.name, load(path)))
        except (OSError, ValueError) as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            errors += 1
    if runs:
        print(table(runs, per_stage=args.stages), end="")
    return 1 if errors and not runs else 0


if __name__ == "__main__":
    sys.exit(main())
