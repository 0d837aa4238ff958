"""`python engine/run.py [run] --config FILE`: run an audit, write its report, print a one-screen summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.cli.common import add_config_arguments, load_run_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run an audit (the default command)")
    add_config_arguments(p)
    p.add_argument("--run-dir", default=None, help="override run_dir")
    p.add_argument("--executor", choices=["ray", "local"], default=None, help="override execution.executor")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_run(args: argparse.Namespace) -> int:
    from engine.execution.pipeline import Pipeline
    from engine.report import write_report

    extra = {}
    if args.run_dir is not None:  # an empty one is refused by the config (it was ignored: the config's own ran)
        extra["run_dir"] = args.run_dir
    if args.executor:
        extra["execution.executor"] = args.executor
    config = load_run_config(args.config, args.set, extra, allow_python_backends=args.allow_python_backends)
    started = time.time()
    pipeline = Pipeline(config, progress=not args.quiet)
    try:
        result = pipeline.run()
        # The config as run: its models pinned to the weights they loaded (what config.yaml records).
        paths = write_report(result, pipeline.config)  # still under the run directory's lock
    finally:
        pipeline.close()
    print(summary(result, paths, time.time() - started))
    failed = result.failed_shards()
    if failed:
        total = sum(len(v) for v in failed.values())
        print(f"\n{total} shards failed for good (their rows are missing from the tables); rerun the same command "
              "to compute them:", file=sys.stderr)
        for stage, shards in failed.items():
            reason = next(iter(shards.values()))
            print(f"  {stage}: {len(shards)} shards — {reason}", file=sys.stderr)
    # A retry of stored shards' failed rows that the backend refused (a 401, the spend cap): the shards stand, their
    # rows stay failed — not "may succeed later", and not a finished run (this exited 0 where a fresh shard's
    # refusal exits 3).
    refused = {rec.stage: rec.retry_failed for rec in result.stages if getattr(rec, "retry_failed", None)}
    if refused:
        print(f"\n{sum(len(v) for v in refused.values())} shards' failed rows were sent again and refused (the rows "
              "stay failed; fix the cause and rerun the same command):", file=sys.stderr)
        for stage, shards in refused.items():
            print(f"  {stage}: {len(shards)} shards — {next(iter(shards.values()))}", file=sys.stderr)
    # Rows whose call failed transiently are kept as failed, unknown in every table, and a rerun sends them: the run
    # is not finished either (this exited 0, and a script could not tell it from a complete run). Not those that
    # failed on their last allowed attempt: a rerun sends nothing, and exit 3 would ask for it for ever.
    to_retry = sum(rec.rows_to_retry for rec in result.stages)
    return 3 if failed or refused or to_retry else 0


def summary(result, paths: dict[str, Path], wall_s: float) -> str:
    """The end-of-run summary: counts, each stage's rows and time, and where the report is."""
    groups = result.tables["groups"]
    lines = [
        "",
        f"taskdiv run finished in {wall_s:.0f} s — {result.run_dir}",
        f"  prompts: {result.tables['prompts'].num_rows}   groups: {groups.num_rows}   "
        f"responses: {result.tables['responses'].num_rows}   judgments: {result.tables['judgments'].num_rows}"
        + (f" (answers), {result.tables['trace_judgments'].num_rows} (traces)" if "trace_judgments" in result.tables
           else ""),
    ]
    for rec in result.stages:
        reused = f" ({rec.units_reused}/{rec.units} shards reused)" if rec.units_reused else ""
        lines.append(f"  {rec.stage:<28} {rec.rows:>6} rows  {rec.wall_s:7.1f} s{reused}")
    if result.skipped_inputs:
        lines.append(f"  skipped input rows: {len(result.skipped_inputs)} (listed in the report)")
    to_retry = sum(rec.rows_to_retry for rec in result.stages)
    if to_retry:
        lines.append(f"  rows whose backend call failed and may succeed later: {to_retry} (kept as failed; rerun "
                     "the same command to send them, and only them, again)")
    last = sum(rec.rows_transient for rec in result.stages) - to_retry
    if last > 0:
        lines.append(f"  rows that failed on their last allowed attempt (execution.row_retries): {last} (kept as "
                     "failed)")
    gave_up = sum(rec.rows_gave_up for rec in result.stages)
    if gave_up:
        lines.append(f"  rows still failed after execution.row_retries reruns: {gave_up} (kept as failed)")
    costs = [rec.backend.get("cost_usd") for rec in result.stages if (rec.backend or {}).get("cost_usd") is not None]
    if costs:
        missing = sum(int((rec.backend or {}).get("usage_missing") or 0) for rec in result.stages)
        lines.append(f"  cost: ${sum(costs):,.4f} as the backends reported it (priced models)"
                     + (f"; more, as {missing} priced replies carried no token usage" if missing else ""))
    lines.append(f"  report: {paths['html']}  (also {Path(paths['markdown']).name}, report.json, run_stats.json)")
    if paths.get("explore"):
        lines.append(f"  every group: {paths['explore']}")
    return "\n".join(lines)
