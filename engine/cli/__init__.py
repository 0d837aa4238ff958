"""The command line: `python engine/run.py [COMMAND] …` and the `taskdiv` console script, one parser for both.

Commands: run (the default), plan, fetch, compare, explore, rewards, calibrate, agreement; each lives in its own
module with `add_parser` and its `cmd_*` function, and shares `engine.cli.common`. A user's mistake (bad config,
bad input row, unreachable model, a path that cannot be read or written) is a one-line `error: …` on stderr and
exit code 2 — never a traceback.

Exit codes (README, "Exit codes"): 0 done; 2 a mistake in the command, its config or its inputs (nothing computed);
3 `run`/`rewards` finished with shards that failed for good, rows that failed in a way that may not recur (with
an attempt left), or failed rows a retry sent again and the backend refused (a rerun computes them); 130
interrupted (Ctrl-C; run, rewards and fetch keep what they finished).

May import everything in engine/; nothing imports engine.cli except the entry points (engine/run.py, the console
script).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any, Sequence

from engine.cli.common import terminal_text
from engine.errors import ConfigError, TaskdivError

COMMANDS = ("run", "plan", "fetch", "compare", "explore", "rewards", "calibrate", "agreement")


def prepare_environment() -> None:
    """Before Ray or torch start: stay on loopback in the embedded default and never let transformers compile its
    decode loop on CPU (minutes on the first call). Hub access is a run setting (models.offline), not forced here."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")


def build_parser() -> argparse.ArgumentParser:
    from engine.cli import agreement, calibrate, compare, explore, fetch, plan, rewards, run

    parser = argparse.ArgumentParser(prog="taskdiv", description=(
        "Audit task-dependent output homogenization of language models. Commands: " + ", ".join(COMMANDS)
        + " (default: run)."))
    sub = parser.add_subparsers(dest="command")
    for module in (run, plan, fetch, compare, explore, rewards, calibrate, agreement):
        module.add_parser(sub)
    return parser


# A message that opens with a config key ("generators[0].options.max_model_lenn: …"), as preflight's checks of the
# models word theirs: the file it is in was not named, where the load's own errors name it.
_OPENS_WITH_KEY = re.compile(r"^[a-z_]+(?:\[\d+\])?(?:\.[A-Za-z0-9_]+(?:\[\d+\])?)*: ")


def with_config_file(message: str, config: Any) -> str:
    """`message` with the config file it is about in front, where it opens with a key of it and names no file."""
    named = config and (message.startswith(f"{config}:") or message.startswith(f"{os.path.basename(str(config))}:"))
    return f"{config}: {message}" if config and not named and _OPENS_WITH_KEY.match(message) else message


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command, return the exit code."""
    prepare_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        # `run` takes no positional argument: a first word that is no command is a misspelt one ("explor RUN"),
        # which read as `run explor RUN` ended in argparse's "unrecognized arguments" and the top-level usage.
        import difflib

        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        print(f"error: unknown command {argv[0]!r}" + (f" (did you mean {close[0]}?)" if close else "")
              + f"; the commands are {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        # No progress bars means transformers' and the hub's too ("Loading weights" per model load): read when they
        # are imported, here before any is, and inherited by an embedded Ray's workers.
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            from engine.cli.run import cmd_run

            return cmd_run(args)
        if args.command == "plan":
            from engine.cli.plan import cmd_plan

            return cmd_plan(args)
        if args.command == "fetch":
            from engine.cli.fetch import cmd_fetch

            return cmd_fetch(args)
        if args.command == "compare":
            from engine.cli.compare import cmd_compare

            return cmd_compare(args)
        if args.command == "explore":
            from engine.cli.explore import cmd_explore

            return cmd_explore(args)
        if args.command == "rewards":
            from engine.cli.rewards import cmd_rewards

            return cmd_rewards(args)
        if args.command == "calibrate":
            from engine.cli.calibrate import cmd_calibrate

            return cmd_calibrate(args)
        if args.command == "agreement":
            from engine.cli.agreement import cmd_agreement

            return cmd_agreement(args)
    except ConfigError as exc:
        print(f"error: {terminal_text(with_config_file(str(exc), getattr(args, 'config', None)))}", file=sys.stderr)
        return 2
    except TaskdivError as exc:
        print(f"error: {terminal_text(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave that cannot be read or written: the message names it
        print(f"error: {terminal_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C is the user's choice, not a crash: no traceback
        if args.command in ("run", "rewards"):
            print("interrupted: every finished shard is kept; the same command resumes from them", file=sys.stderr)
        elif args.command == "fetch":
            print("interrupted: files already verified are kept; the same command resumes the rest", file=sys.stderr)
        else:
            print(f"interrupted: {args.command} keeps nothing of an unfinished call; run it again", file=sys.stderr)
        return 130
    return 0


def console() -> None:
    """The `taskdiv` console script."""
    sys.exit(main())
