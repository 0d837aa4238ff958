"""Prompts: the records every run starts from, our JSONL format, and the built-in prompt set.

A prompt has a stable id, the hash of its source and text, so the same prompt keeps its id in every run and every
shard key built on it. Bad rows raise an InputError naming file, line and field, or, with on_error="skip", are
counted and listed (`LoadReport`) while the rest loads.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from engine.errors import InputError
from engine.method.taxonomy import LETTERS

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_PATH = REPO_ROOT / "datasets" / "builtin" / "prompts.jsonl"
UTF8_BOM = b"\xef\xbb\xbf"


def prompt_id(source: str, text: str) -> str:
    """Stable id of a prompt: 16 hex digits of sha256(source, text)."""
    return hashlib.sha256(f"{source}\x1f{text}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Prompt:
    """One prompt.

    Attributes:
        prompt_id: stable id (see `prompt_id`).
        source: where it comes from ("builtin", "simpleqa", a file stem…).
        text: the user prompt.
        gold_category: the category letter A–H where known.
        gold_answer: the reference answer for verifiable prompts (A, D), where known.
        meta: anything else worth keeping (JSON-serialisable).
    """

    prompt_id: str
    source: str
    text: str
    gold_category: str | None = None
    gold_answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Where it was read (file, line), for errors found after loading (prompts.max_prompt_chars); not data.
    origin: tuple[str, int | None] | None = field(default=None, compare=False, repr=False)

    def to_row(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "source": self.source,
            "text": self.text,
            "gold_category": self.gold_category,
            "gold_answer": self.gold_answer,
            "meta": orjson.dumps(self.meta).decode(),
        }


@dataclass
class LoadReport:
    """Rows skipped while loading (on_error="skip"): each as the InputError that describes it; and what the load
    changed without refusing it (warnings: one sentence each, reported with the run)."""

    skipped: list[InputError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, error: InputError) -> None:
        self.skipped.append(error)


def make_prompt(
    text: Any,
    *,
    source: str,
    gold_category: Any = None,
    gold_answer: Any = None,
    meta: dict[str, Any] | None = None,
    path: str = "<input>",
    line: int | None = None,
    field_names: dict[str, str] | None = None,
) -> Prompt:
    """Validate the fields of one prompt and build it; errors name the file, line and (source) field.

    Args:
        field_names: how the source file names our fields, e.g. {"text": "problem"}, so that errors name the
            column the user sees.
    """
    names = {"text": "text", "gold_category": "gold_category", "gold_answer": "gold_answer", **(field_names or {})}
    if text is None:
        raise InputError(path, line, names["text"], "missing required field (the prompt text)")
    if not isinstance(text, str):
        raise InputError(path, line, names["text"], f"expected a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError(path, line, names["text"], "empty prompt text")
    if gold_category is not None:
        if not isinstance(gold_category, str) or gold_category.strip().upper() not in LETTERS:
            raise InputError(path, line, names["gold_category"], f"expected one of A-H, got {gold_category!r}")
        gold_category = gold_category.strip().upper()
    # A JSON true/false is refused rather than written out: whether it means "True", "true" or "yes" is a guess, and
    # bool is an int to isinstance, so it would otherwise reach the tables as a bool and fail there without a line.
    if isinstance(gold_answer, bool):
        raise InputError(path, line, names["gold_answer"], f"expected a string, got a boolean ({gold_answer!r}); "
                                                           "quote the answer if it is the word")
    if gold_answer is not None and not isinstance(gold_answer, (str, int, float)):
        raise InputError(path, line, names["gold_answer"], f"expected a string, got {type(gold_answer).__name__}")
    if isinstance(gold_answer, float):
        # A column of whole numbers with a gap is float64 in a DataFrame and its Parquet file (391 read "391.0",
        # which "The answer is 391" does not match); a JSON 1969.0 is the number 1969.
        if not math.isfinite(gold_answer):
            raise InputError(path, line, names["gold_answer"], f"expected an answer, got the number {gold_answer}")
        gold_answer = str(int(gold_answer)) if gold_answer.is_integer() else repr(gold_answer)
    elif isinstance(gold_answer, int):
        gold_answer = str(gold_answer)
    return Prompt(
        prompt_id=prompt_id(source, text),
        source=source,
        text=text,
        gold_category=gold_category,
        gold_answer=gold_answer,
        meta=meta or {},
        origin=(path, line) if path != "<input>" else None,
    )


def refuse_nul(text: str, path: str, line: int | None, key: str) -> None:
    """Raise when prompt text holds a NUL character: it never belongs in a prompt and usually means a corrupted or
    binary file. Shared by our JSONL prompts and the benchmarks' loaders (loaders.common.text_value), so a file is
    refused the same way whichever source reads it."""
    if "\x00" in text:
        raise InputError(path, line, key, "contains a NUL character (corrupted or binary data?)")


NOT_JSONL = {".csv", ".tsv", ".parquet", ".xlsx", ".xls", ".arrow", ".feather"}


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; raises InputError for invalid UTF-8 or JSON.

    Reads bytes so that a bad byte is reported with its line rather than as a decoding error of the whole file. A
    UTF-8 byte-order mark at the start of the file (as Windows editors write it) is dropped, as CSV's is.
    """
    if path.suffix.lower() in NOT_JSONL:
        # Read as JSON lines, a CSV or Parquet file failed on every line with "malformed JSON".
        raise InputError(str(path), None, None, f"a {path.suffix} file where JSON lines (.jsonl) are read: convert it, "
                         "or give it to a source that reads its format (the responses file reads CSV and Parquet)")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(str(path), None, None, "file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(str(path), None, None, "is a folder, expected a file") from exc
    data = data.removeprefix(UTF8_BOM)
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, InputError(str(path), number, None, f"invalid UTF-8 at byte {exc.start} of the line")
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield number, InputError(str(path), number, None, f"malformed JSON: {exc}")
            continue
        try:
            repeated = repeated_key(raw, row)
        except RecursionError:  # orjson reads 1,024 levels, the standard library's parser fewer
            yield number, InputError(str(path), number, None, "nested too deeply")
            continue
        if repeated is not None:  # orjson keeps the last silently: {"text": "b", "text": "c"} loaded "c"
            yield number, InputError(str(path), number, repeated, "given twice in the row; keep one")
            continue
        yield number, row


# A quoted name followed by a colon: a key (or, inside a string, text that looks like one — which only costs the
# second parse below).
_KEY_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:')


def repeated_key(raw: bytes, row: Any) -> str | None:
    """A key the top-level object of the JSON line `raw` (parsed: `row`) gives twice, else None (as the YAML loader
    refuses a repeated key). Parsed again with the standard library, which sees the pairs, only where a key's name
    occurs twice among the line's keys at any depth, or one is written with escapes. One pass over the line: a count
    per key of the row was a pass each (80,000 keys: 53 s a line). Raises RecursionError for a line nested deeper
    than the standard library reads."""
    if not isinstance(row, dict):
        return None
    names = _KEY_TOKEN.findall(raw)
    if len(names) == len(set(names)) and not any(b"\\" in name for name in names):
        return None
    built: list[str | None] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()  # a count per key was quadratic again here (80,000 keys beside one nested repeat)
        built.append(next((k for k, _ in pairs if k in seen or seen.add(k)), None))
        return dict(pairs)

    json.loads(raw, object_pairs_hook=pairs_hook)
    return built[-1] if built else None  # the top-level object is the last one built


def load_jsonl_prompts(path: str | Path, *, source: str | None = None, on_error: str = "fail",
                       report: LoadReport | None = None) -> list[Prompt]:
    """Load prompts in our JSONL format.

    Each line is an object with `text` (required), and optionally `gold_category` (A–H), `gold_answer`,
    `source` (default: the file's stem) and `meta` (an object). Unknown fields go into `meta`.

    Args:
        path: the file.
        source: the source name for ids (default: each row's `source`, else the file stem).
        on_error: "fail" raises the first InputError; "skip" records it in `report` and goes on.
        report: collects skipped rows.

    Raises:
        InputError: naming file, line and field.
    """
    path = Path(path)
    report = report if report is not None else LoadReport()
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    for number, obj in iter_jsonl(path):
        try:
            if isinstance(obj, InputError):
                raise obj
            if not isinstance(obj, dict):
                raise InputError(str(path), number, None, f"expected a JSON object, got {type(obj).__name__}")
            meta = obj.get("meta") or {}
            if not isinstance(meta, dict):
                raise InputError(str(path), number, "meta", f"expected an object, got {type(meta).__name__}")
            row_source = source or obj.get("source") or path.stem
            if not isinstance(row_source, str):
                raise InputError(str(path), number, "source", f"expected a string, got {type(row_source).__name__}")
            if isinstance(obj.get("text"), str):  # other types are make_prompt's to refuse
                refuse_nul(obj["text"], str(path), number, "text")
            extra = {k: v for k, v in obj.items()
                     if k not in {"text", "gold_category", "gold_answer", "source", "meta"}}
            p = make_prompt(
                obj.get("text"),
                source=row_source,
                gold_category=obj.get("gold_category"),
                gold_answer=obj.get("gold_answer"),
                meta={**extra, **meta},
                path=str(path),
                line=number,
            )
            if p.prompt_id in seen:
                raise InputError(
                    str(path), number, "text", f"duplicate prompt (same source and text as line {seen[p.prompt_id]})"
                )
            seen[p.prompt_id] = number
            prompts.append(p)
        except InputError as exc:
            if on_error != "skip":
                raise
            report.add(exc)
    return prompts


def over_prompt_cap(prompts: list[Prompt], max_chars: int, where: str) -> dict[str, InputError]:
    """prompt id → the error of each prompt longer than `max_chars` (prompts.max_prompt_chars; 0: no limit)."""
    if not max_chars:
        return {}
    # Where the prompt was read: a `line` of the user's own in meta named a line that was none (the loaders set
    # none), and a benchmark's error named its source, not its file.
    return {p.prompt_id: InputError(*(p.origin or (where, None)), "text",
                                    f"prompt {p.prompt_id} has {len(p.text)} characters, over "
                                    f"prompts.max_prompt_chars ({max_chars})")
            for p in prompts if len(p.text) > max_chars}


def within_prompt_cap(prompts: list[Prompt], max_chars: int, on_error: str, report: LoadReport,
                      where: str) -> list[Prompt]:
    """The prompts within prompts.max_prompt_chars: a longer one is a bad row (raised under on_error "fail", else
    recorded in `report` and left out)."""
    bad = over_prompt_cap(prompts, max_chars, where)
    if bad and on_error == "fail":
        raise next(iter(bad.values()))
    for error in bad.values():
        report.add(error)
    return [p for p in prompts if p.prompt_id not in bad] if bad else prompts


def select(prompts: list[Prompt], *, per_category: int | None = None, limit: int | None = None) -> list[Prompt]:
    """Keep the first `per_category` prompts of each gold category (prompts without one are kept), then `limit`."""
    if per_category is not None:
        counts: dict[str | None, int] = {}
        kept = []
        for p in prompts:
            if p.gold_category is None or counts.get(p.gold_category, 0) < per_category:
                counts[p.gold_category] = counts.get(p.gold_category, 0) + 1
                kept.append(p)
        prompts = kept
    return prompts[:limit] if limit is not None else prompts
