"""`python engine/run.py rewards --config FILE --in GROUPS --out REWARDS.jsonl`: per-response functional diversity
rewards (engine.method.rewards) for groups of responses, judged by the config's judges — for training data or for
scoring a policy's samples offline. Resumable like a run: the work happens in the config's run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.common import add_config_arguments, input_file, load_run_config, output_path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("rewards", help="per-response functional diversity rewards for groups of responses",
                              description=__doc__)
    add_config_arguments(p)
    p.add_argument("--in", dest="groups", type=Path, required=True,
                   help="groups of responses: a responses file (ours, lm-eval, Inspect, NoveltyBench)")
    p.add_argument("--out", type=Path, required=True, help="where to write one JSON line per response")
    p.add_argument("--run-dir", default=None, help="override run_dir (where the judging is kept for reruns; a "
                   "directory holding an audit with prompts from a source or quality or accuracy on is refused: its "
                   "tables would be replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


# What `rewards` sets itself (engine.api._rewards_config): an override of these would be dropped without a word.
# The other prompts keys (format, on_error, max_response_chars…) read the --in file and are taken.
FIXED_KEYS = ("prompts.source", "prompts.path", "prompts.per_category", "prompts.limit", "quality.enabled",
              "quality.reward_model", "accuracy.enabled")


def cmd_rewards(args: argparse.Namespace) -> int:
    import sys

    from engine.api import REWARDS_OVERRIDES, scored_rewards
    from engine.errors import TaskdivError

    input_file(args.groups, "--in")
    output_path(args.out)
    if args.out.resolve() == args.groups.resolve():
        raise TaskdivError(f"--out {args.out}: is the --in file; the rewards would replace the groups they score")
    fixed = [key for item in args.set if (key := item.partition("=")[0].strip()) in FIXED_KEYS
             or key in ("prompts", "quality", "accuracy") or key.startswith("quality.reward_model.")]
    if fixed:
        raise TaskdivError(f"--set {fixed[0]}: rewards sets this itself (prompts: the --in file, every group; "
                           "quality and accuracy off); select the groups in the --in file instead")
    extra = {**REWARDS_OVERRIDES, **({"run_dir": args.run_dir} if args.run_dir is not None else {})}
    from engine.config import lenient_settings

    with lenient_settings():  # the prompts are replaced by the --in file (engine.api._rewards_config)
        config = load_run_config(args.config, args.set, extra, allow_python_backends=args.allow_python_backends)
    rows, result = scored_rewards(config, args.groups, args.out, progress=not args.quiet)
    for warning in result.load_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for skipped in result.skipped_inputs:  # prompts.on_error: skip — no reward row for them, said here
        print(f"skipped input row: {skipped}", file=sys.stderr)
    from engine.method.rewards import answers

    unknown = sum(r["reward"] is None for r in rows)
    # A row left out of its group keeps the file's text: a thinking cut off before its closing tag is no answer.
    silent = sum(r["reward"] is None and not answers(r.get("response") or "", r.get("trace")) for r in rows)
    groups = len({(r["prompt_id"], r["model"], r["strategy"]) for r in rows})
    uncategorised = len({(r["prompt_id"], r["model"], r["strategy"]) for r in rows if r["category"] is None})
    failed = result.failed_shards()
    why = ("a stage's shards failed, or no judge's classes are known for their group, or a group of one response"
           if failed else "no judge's classes known for their group, or a group of one response")
    if silent:
        why += f"; {silent} of them give no answer (empty, or cut off while thinking)"
    if uncategorised:
        why += (f"; {uncategorised} groups have no category (the classifier gave no readable answer): give them a "
                "`category` in the --in file")
    # A judge that left a group unresolved does not enter its rewards (the others' mean stands): said, not hidden.
    judges = len(config.judges)
    partial = len({(r["prompt_id"], r["model"], r["strategy"]) for r in rows if 0 < len(r["judges"]) < judges})
    notes = (f"; {partial} groups rewarded by only some of the {judges} judges (each row's `judges` names them)"
             if partial else "")
    notes += (f"; {len(result.skipped_inputs)} input rows skipped (prompts.on_error: skip), with no row in the "
              "output" if result.skipped_inputs else "")
    print(f"{len(rows)} rewards for {groups} groups written to {args.out}"
          + (f"; {unknown} without a reward ({why})" if unknown else "") + notes)
    if failed:
        print(f"\n{sum(len(v) for v in failed.values())} shards failed for good (their groups have no reward); "
              "rerun the same command to compute them:", file=sys.stderr)
        for stage, shards in failed.items():
            print(f"  {stage}: {len(shards)} shards — {next(iter(shards.values()))}", file=sys.stderr)
        return 3
    transient = sum(rec.rows_to_retry for rec in result.stages)
    if transient:  # as `run`: unknown until a rerun sends them again (not those out of attempts)
        print(f"\n{transient} rows' backend calls failed and may succeed later (their groups have no reward yet); "
              "rerun the same command to send them, and only them, again", file=sys.stderr)
        return 3
    return 0
