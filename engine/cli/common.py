"""What every subcommand shares: the demo config's path, `--set` overrides, loading a config with them, and writing
an error to the terminal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from engine.errors import TaskdivError

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def file_digest(path: str | Path) -> str:
    """16 hex digits of a file's sha256: how `calibrate` records the pairs it was fitted on and scored on, and how
    `agreement` recognises them."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """--set key=value pairs; values are read as YAML scalars (3 → int, true → bool, null → None)."""
    from engine.config import load_yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TaskdivError(f"--set {item!r}: expected key=value, e.g. --set sampling.max_tokens=64")
        try:
            out[key.strip()] = load_yaml(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", exc)
            # The key alone: the value may be a secret put on the command line.
            raise TaskdivError(f"--set {key.strip()}=…: the value is not valid YAML ({problem})") from None
    return out


def load_run_config(path: Path | None, overrides: Sequence[str] = (), extra: dict[str, Any] | None = None,
                    allow_python_backends: bool = False):
    """The run config at `path` (default: the demo) with `--set` overrides and any `extra` dotted keys applied.
    `allow_python_backends`: the user passed --allow-python-backends (this process and its workers may load
    python: backends)."""
    from engine.config import load_config, registry

    if allow_python_backends:
        os.environ[registry.ALLOW_PYTHON_ENV] = "1"

    return load_config(path or DEMO_CONFIG, {**parse_set(overrides), **(extra or {})})


def input_file(path: str | Path, flag: str) -> Path:
    """`path` as a command's input file, said as what it is where it is none (read before any work: a digest of it,
    or the groups a run scores)."""
    path = Path(path)
    if not path.is_file():
        raise TaskdivError(f"{flag} {path}: " + ("is a folder, expected a file" if path.is_dir() else "no such file"))
    return path


def output_path(path: str | Path, flag: str = "--out", folder: bool = False) -> Path:
    """`path` as an output of a command, checked before any work: its folder exists (with `folder`, the nearest
    existing one: an output folder is made with its parents) and can be written, and it is a file (or, with
    `folder`, a folder) or not there yet. A mistake here found after the work would lose it (paid judge calls, a
    fit of minutes) to a traceback."""
    path = Path(path)
    parent = path.expanduser().resolve().parent
    if folder:  # an output folder is made with its parents (compare's reports/2026/a-vs-b): the nearest that is
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise TaskdivError(f"{flag} {path}: {parent} is a file, not a folder")
    elif not parent.is_dir():
        raise TaskdivError(f"{flag} {path}: the folder {parent} does not exist")
    if folder and path.exists() and not path.is_dir():
        raise TaskdivError(f"{flag} {path}: is a file, expected a folder (or a path not there yet)")
    if not folder and path.is_dir():
        raise TaskdivError(f"{flag} {path}: is a folder, expected a file name")
    # Written where the folder lets us: a read-only folder (or /proc) failed only after the work, naming a
    # temporary file of ours.
    where = path.expanduser() if folder and path.is_dir() else parent
    probe = where / f".taskdiv-write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TaskdivError(f"{flag} {path}: cannot write in {where} ({exc.strerror or exc})") from None
    return path


def add_config_arguments(parser, *, help_config: str | None = None) -> None:
    """--config and --set, as every subcommand that reads a run config takes them."""
    parser.add_argument("--config", type=Path, default=None,
                        help=help_config or f"YAML run config (default: the built-in demo, "
                                            f"{DEMO_CONFIG.relative_to(DEMO_CONFIG.parents[1])})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, dotted for nested keys and list items (repeatable)")
    parser.add_argument("--allow-python-backends", action="store_true",
                        help="allow `backend: python:module:Class` (it runs that code: use only with a config you "
                             "trust)")


def terminal_text(message: str) -> str:
    """An error message for the terminal: what it quotes from a config, a run directory or a server may hold control
    characters (a title set, a screen cleared) — written as \\xNN; its own line breaks are kept."""
    from engine.method.parsing import printable

    return printable(message, newlines=True)
