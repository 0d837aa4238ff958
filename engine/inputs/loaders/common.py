"""What every benchmark loader shares: reading CSV, JSONL and Parquet rows with their line numbers, and collecting
prompts under one error policy.

Readers yield ``(line, row)`` where ``row`` is a dict keyed by the source's own column names, or the InputError that
describes why that row could not be read, so each loader decides once, in `PromptSink.add`, whether to raise or to
skip. Problems with the whole file (missing, not a table, a required column absent) raise at once whatever the
policy: no row of such a file could load.

Line numbers: JSONL, the line; CSV, the physical line where the record starts (a quoted cell may span lines);
Parquet, the 1-based row number.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from engine.errors import InputError
from engine.inputs.prompts import LoadReport, Prompt, iter_jsonl, refuse_nul

ON_ERROR = ("fail", "skip")

Row = dict[str, Any]
RowOrError = Row | InputError

# Lone surrogates U+DC80–U+DCFF are what `surrogateescape` turns undecodable bytes into; they cannot come from valid
# UTF-8, so a cell holding one holds a bad byte.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_BR_TAG = re.compile(r"[ \t]*<br\s*/?>[ \t]*\r?\n?", re.IGNORECASE)


CSV_FIELD_LIMIT = 64 * 1024 * 1024  # characters per CSV cell

def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing file or a folder is an InputError naming the path."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(str(path), None, None, "file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(str(path), None, None, "is a folder, expected a file") from exc


def read_csv(path: Path, *, required: Sequence[str]) -> Iterator[tuple[int, RowOrError]]:
    """Rows of a CSV file with a header row, as dicts keyed by the header's column names.

    Each physical line is decoded on its own, so an invalid byte is reported with the record that holds it (and the
    column, where it can be told) instead of failing the whole file. Quoting is parsed strictly: a stray quote is a
    malformed row, not a silently merged cell.

    Args:
        path: the CSV file.
        required: columns the header must have.

    Yields:
        (line where the record starts, row dict or the InputError for that row). Blank lines are skipped.

    Raises:
        InputError: missing file, no header, a required column absent, or an undecodable header.
    """
    where = str(path)
    raw_lines = read_bytes(path).splitlines(keepends=True)
    bad_bytes: dict[int, int] = {}
    lines: list[str] = []
    for number, raw in enumerate(raw_lines, 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad_bytes[number] = exc.start
            lines.append(raw.decode("utf-8", errors="surrogateescape"))
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    # The csv module refuses cells over 128 KiB by default; a long prompt or answer is not malformed. Raised (never
    # lowered) to CSV_FIELD_LIMIT, a process-wide setting of the csv module.
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(where, None, None, "empty file, expected a header row") from None
    except csv.Error as exc:
        raise InputError(where, 1, None, f"malformed CSV header: {exc}") from None
    header_end = reader.line_num
    header_bad = [n for n in range(1, header_end + 1) if n in bad_bytes]
    if header_bad:
        n = header_bad[0]
        raise InputError(where, 1, None, f"invalid UTF-8 in the header (line {n}, byte {bad_bytes[n]})")
    header = [name.strip() for name in header]
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:  # read into a dict, the last cell of a repeated column would silently drop the others
        raise InputError(where, 1, repeated[0], f"the header names {', '.join(repeated)} more than once")
    for name in required:
        if name not in header:
            raise InputError(where, 1, name, f"missing column (the header has: {', '.join(header) or 'nothing'})")
    previous_end = header_end
    while True:
        start = previous_end + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            previous_end = reader.line_num
            # A quote left open runs to the end of the file, where csv gives up: every line after it went into this
            # one error, so name them — one skip in the count stands for all those lines.
            span = (f" (lines {start}–{previous_end} read as one row: a quote left open joins the lines after it)"
                    if previous_end > start else "")
            yield start, InputError(where, start, None, f"malformed CSV row: {exc}{span}")
            continue
        previous_end = reader.line_num
        if not record:
            continue
        bad_lines = [n for n in range(start, previous_end + 1) if n in bad_bytes]
        if bad_lines:
            column = next((name for name, cell in zip(header, record) if _ESCAPED_BYTE.search(cell)), None)
            n = bad_lines[0]
            yield start, InputError(where, start, column, f"invalid UTF-8 (line {n}, byte {bad_bytes[n]})")
            continue
        if len(record) != len(header):
            # A quote left open joins the lines after it into this record: say which lines went with it (a row
            # swallowed so had no error of its own, and the skipped count missed it).
            span = (f" in lines {start}–{previous_end} read as one row (a quote left open joins the lines after it)"
                    if previous_end > start else "")
            yield start, InputError(
                where, start, None, f"expected {len(header)} cells ({', '.join(header)}), got {len(record)}{span}"
            )
            continue
        yield start, dict(zip(header, record))


def read_jsonl(path: Path) -> Iterator[tuple[int, RowOrError]]:
    """Objects of a JSONL file; a line that is not valid UTF-8, not JSON or not an object is an InputError row."""
    for number, obj in iter_jsonl(path):
        if not isinstance(obj, (dict, InputError)):
            obj = InputError(str(path), number, None, f"expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def read_parquet(path: Path, *, required: Sequence[str]) -> Iterator[tuple[int, RowOrError]]:
    """Rows of a Parquet file (the format Hugging Face serves datasets in), numbered from 1.

    Raises:
        InputError: missing or unreadable file, or a required column absent.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = str(path)
    if not path.exists():
        raise InputError(where, None, None, "file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(where, None, None, f"not a readable Parquet file: {exc}") from exc
    for name in required:
        if name not in table.column_names:
            raise InputError(where, None, name, f"missing column (the file has: {', '.join(table.column_names)})")
    for number, row in enumerate(table.to_pylist(), 1):
        yield number, row


def read_table(path: Path, *, required: Sequence[str], formats: Sequence[str]) -> Iterator[tuple[int, RowOrError]]:
    """Rows of a CSV, JSONL or Parquet file, chosen by the file's suffix.

    For JSONL, `required` is checked row by row (a missing key is that row's error, reported by the loader).

    Args:
        path: the file.
        required: columns a CSV header or a Parquet schema must have.
        formats: the suffixes this source accepts, e.g. ("csv", "jsonl").

    Raises:
        InputError: an unsupported suffix, or a file-level problem (see the readers).
    """
    if not path.is_file():  # said as what it is, not as a file of the wrong type
        raise InputError(str(path), None, None, "is a folder, expected a file" if path.is_dir() else "no such file")
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "json":
        suffix = "jsonl"
    if suffix not in formats:
        raise InputError(str(path), None, None, f"unsupported file type {path.suffix!r}; expected one of "
                                                f"{', '.join('.' + f for f in formats)}")
    if suffix == "csv":
        return read_csv(path, required=required)
    if suffix == "parquet":
        return read_parquet(path, required=required)
    return read_jsonl(path)


def br_to_newline(text: str) -> str:
    """Turn HTML line breaks (``<br>``, with the newline that often follows) into plain newlines."""
    return _BR_TAG.sub("\n", text)


def required_value(row: Row, key: str, path: str, line: int) -> Any:
    """``row[key]``; an absent key is an InputError naming the field (JSONL rows may lack any key)."""
    if key not in row or row[key] is None:
        raise InputError(path, line, key, "missing required field")
    return row[key]


def text_value(row: Row, key: str, path: str, line: int) -> Any:
    """The prompt text in ``row[key]``, stripped; type and emptiness are checked by `make_prompt`.

    A NUL character is an error here: it never belongs in a prompt and usually means a corrupted or binary file.
    """
    value = row.get(key)
    if isinstance(value, str):
        refuse_nul(value, path, line, key)
        return value.strip()
    return value


def optional_str(row: Row, key: str, path: str, line: int) -> str | None:
    """``row[key]`` as a string, None when absent or null; numbers are written out, anything else is an error."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(path, line, key, f"expected a string, got {type(value).__name__}")
    return str(value)


def string_list(row: Row, key: str, path: str, line: int) -> list[str] | None:
    """``row[key]`` as a list of strings (Parquet may give a tuple-like array), None when absent or null."""
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputError(path, line, key, "expected a list of strings")
    return list(value)


class PromptSink:
    """Collects the prompts of one file under one error policy, and catches duplicates.

    Args:
        path: the file (for error messages).
        on_error: "fail" raises the first InputError; "skip" records it in `report` and goes on.
        report: collects skipped rows (a fresh one when None).
        text_field: the source's name for the prompt text, named by duplicate errors.
        merge_duplicates: when True a repeated prompt is not an error: the first occurrence is kept and
            `on_duplicate` is called with it and the repeat (for sources that repeat prompts by design).
        on_duplicate: called as on_duplicate(first_prompt, line_of_first, repeat_prompt, line_of_repeat) and returns
            the prompt to keep, or raises InputError when this repeat is not acceptable after all.

    Raises:
        ValueError: on_error is not "fail" or "skip" (a programming error, not bad input).
    """

    def __init__(
        self,
        path: Path,
        *,
        on_error: str,
        report: LoadReport | None,
        text_field: str,
        merge_duplicates: bool = False,
        on_duplicate: Callable[[Prompt, int, Prompt, int], Prompt] | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        self.path = str(path)
        self.on_error = on_error
        self.report = report if report is not None else LoadReport()
        self.text_field = text_field
        self.merge_duplicates = merge_duplicates
        self.on_duplicate = on_duplicate
        self._order: list[str] = []
        self._prompts: dict[str, Prompt] = {}
        self._first_line: dict[str, int] = {}

    def add_rows(self, rows: Iterable[tuple[int, RowOrError]], build: Callable[[Row, int], Prompt | None]) -> None:
        """Build a prompt from each row with ``build(row, line)`` (None: the row is deliberately left out)."""
        for line, row in rows:
            try:
                if isinstance(row, InputError):
                    raise row
                prompt = build(row, line)
                if prompt is not None:
                    self._keep(prompt, line)
            except InputError as exc:
                if self.on_error != "skip":
                    raise
                self.report.add(exc)

    def _keep(self, prompt: Prompt, line: int) -> None:
        pid = prompt.prompt_id
        if pid not in self._prompts:
            self._order.append(pid)
            self._prompts[pid] = prompt
            self._first_line[pid] = line
            return
        first_line = self._first_line[pid]
        if not self.merge_duplicates:
            raise InputError(
                self.path, line, self.text_field, f"duplicate prompt (same source and text as line {first_line})"
            )
        if self.on_duplicate is not None:
            self._prompts[pid] = self.on_duplicate(self._prompts[pid], first_line, prompt, line)

    @property
    def prompts(self) -> list[Prompt]:
        """The prompts kept, in file order of their first occurrence."""
        return [self._prompts[pid] for pid in self._order]
