"""Errors a user can act on: each names where the problem is (file, line, field or config key) and what was expected."""

from __future__ import annotations


class TaskdivError(Exception):
    """Base for errors reported to the user without a traceback."""


class ConfigError(TaskdivError):
    """A run configuration is invalid: unknown key, wrong type or value out of range."""


class InputError(TaskdivError):
    """A row of an input file is invalid.

    Attributes:
        path: the file.
        line: 1-based line (JSONL/CSV) or row number (Parquet), or None for file-level problems.
        field: the offending field, or None.
        reason: what is wrong and what was expected.
    """

    def __init__(self, path: str, line: int | None, field: str | None, reason: str) -> None:
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        where = self.path + (f":{line}" if line is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {reason}")


class RunDirError(TaskdivError):
    """The run directory cannot be used (not writable, or holds a run of another config)."""
