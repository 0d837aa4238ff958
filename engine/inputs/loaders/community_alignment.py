"""Community Alignment (Zhang et al. 2025a): multilingual, multi-turn preference conversations; the paper drew 50
English first-turn prompts from it (categories F and H: values, religion, family, politics, culture).

Format: the Hugging Face dataset ``facebook/community-alignment-dataset`` (CC-BY-4.0): one row per annotated
conversation, served as CSV (public code downloads ``community_alignment.csv`` from the repository's root; copies
laid out in splits name it ``data/filtered_community_alignment.csv``, ``data/full_community_alignment.csv``) and as
Parquet (the hub's conversion, or ``load_dataset(..., split="filtered")`` written out); JSONL rows
(``Dataset.to_json``) load too.

What is known of the columns, and how sure we are: no copy of the data or of its card's field list was available
when this was written. Public code that reads the file uses ``conversation_id``, ``annotator_id``,
``assigned_lang`` (language codes such as "en"), ``is_pregenerated_first_prompt``, and, for each of four turns
(first, second, third, fourth), ``{turn}_turn_prompt``, ``{turn}_turn_response_{a,b,c,d}``,
``{turn}_turn_preferred_response`` and ``{turn}_turn_feedback``. That code also treats the literal cell
"EMPTY STRING" as an empty cell, and so do we. Because the column names are second-hand, the prompt column is a
parameter (`text_field`, default ``first_turn_prompt``) and the language filter can be turned off (`lang=None`).

A row whose prompt cell is empty ("", "EMPTY STRING", a null) holds no turn to take, so it is left out like a row
of another language, not an error that stops a run under on_error: fail.

Each row is one annotator's conversation, and many annotators see the same pre-generated first prompt (the card
reports >2500 prompts with at least 10 annotations each), so a repeated prompt is expected here, not an error: the
first row is kept and ``meta["rows"]`` / ``meta["conversation_ids"]`` count and list every row that carried it.

What was left out or folded is said in one warning of the LoadReport: rows read, rows of another language, rows
with an empty prompt, repeats folded, prompts kept.

No gold category: the paper's 50 are F or H, chosen by hand; the dataset has no label that decides between them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Iterator

from engine.errors import InputError
from engine.inputs.loaders.common import PromptSink, optional_str, read_table, text_value
from engine.inputs.prompts import LoadReport, Prompt, make_prompt

SOURCE = "community_alignment"
FORMATS = ("csv", "jsonl", "parquet")
TEXT_FIELD = "first_turn_prompt"
LANG_FIELD = "assigned_lang"
# The dataset writes a missing turn as this literal string in some cells (observed by public code reading it).
EMPTY_SENTINEL = "EMPTY STRING"
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _flag(value: Any) -> bool | None:
    """A boolean cell (bool, 0/1, "True"/"False"), or None when absent or unreadable; kept in meta only."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if value is not None else ""
    return True if text in _TRUE else False if text in _FALSE else None


def _merge(first: Prompt, first_line: int, repeat: Prompt, line: int) -> Prompt:
    """Fold a repeated prompt into its first row (on_duplicate of PromptSink)."""
    meta = dict(first.meta)
    meta["rows"] = meta.get("rows", 1) + 1
    meta["conversation_ids"] = [*meta.get("conversation_ids", []), *repeat.meta.get("conversation_ids", [])]
    return dataclasses.replace(first, meta=meta)


def load(
    path: str | Path,
    *,
    on_error: str = "fail",
    report: LoadReport | None = None,
    text_field: str = TEXT_FIELD,
    lang: str | None = "en",
) -> list[Prompt]:
    """Load Community Alignment first-turn prompts, one per distinct prompt, without a gold category.

    Args:
        path: a .csv, .jsonl or .parquet file of dataset rows.
        on_error: "fail" raises the first bad row; "skip" records it in `report` and goes on.
        report: collects skipped rows, and a warning counting the rows left out (another language, an empty
            prompt) and folded (a repeated prompt).
        text_field: the column holding the prompt (default ``first_turn_prompt``).
        lang: keep only rows whose ``assigned_lang`` equals this code (the paper used English prompts); None keeps
            every row. Rows of other languages are left out, not errors; so are rows whose prompt is empty.

    Returns:
        One prompt per distinct prompt text, in order of first appearance; meta = conversation_id (the first
        row's), conversation_ids (every row's), rows (how many rows carry the prompt), assigned_lang,
        is_pregenerated_first_prompt.

    Raises:
        InputError: naming file, line (row for Parquet) and field (the text field, assigned_lang), or the file for a
            missing file or column.
    """
    path = Path(path)
    where = str(path)
    required = (text_field, LANG_FIELD) if lang is not None else (text_field,)
    report = report if report is not None else LoadReport()
    counts = {"read": 0, "other_lang": 0, "empty": 0, "folded": 0}

    def counted(rows: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        for item in rows:
            counts["read"] += 1
            yield item

    def build(row: dict[str, Any], line: int) -> Prompt | None:
        row_lang = optional_str(row, LANG_FIELD, where, line)
        if lang is not None:
            if row_lang is None:
                raise InputError(where, line, LANG_FIELD, "missing required field (needed to filter by language)")
            if row_lang.strip().lower() != lang.lower():
                counts["other_lang"] += 1
                return None
        text = text_value(row, text_field, where, line)
        # An empty cell, the sentinel, or a null (Parquet's empty cell); a JSONL row without the key at all is a
        # malformed row, and make_prompt says so.
        if (isinstance(text, str) and text.upper() in ("", EMPTY_SENTINEL)) or (text is None and text_field in row):
            counts["empty"] += 1
            return None
        conversation_id = optional_str(row, "conversation_id", where, line)
        meta = {
            "conversation_id": conversation_id,
            "conversation_ids": [conversation_id] if conversation_id is not None else [],
            "rows": 1,
            "assigned_lang": row_lang,
            "is_pregenerated_first_prompt": _flag(row.get("is_pregenerated_first_prompt")),
        }
        return make_prompt(text, source=SOURCE, meta=meta, path=where, line=line, field_names={"text": text_field})

    def fold(first: Prompt, first_line: int, repeat: Prompt, line: int) -> Prompt:
        counts["folded"] += 1
        return _merge(first, first_line, repeat, line)

    errors_before = len(report.skipped)
    sink = PromptSink(
        path, on_error=on_error, report=report, text_field=text_field, merge_duplicates=True, on_duplicate=fold
    )
    sink.add_rows(counted(read_table(path, required=required, formats=FORMATS)), build)
    prompts = sink.prompts
    if counts["other_lang"] or counts["empty"] or counts["folded"]:
        # Left out and folded without an error: said with the run, or the prompts taken would not add up to the file.
        errors = len(report.skipped) - errors_before
        left_out = [f"{counts['other_lang']:,} of another language than {lang!r}"] if lang is not None else []
        left_out.append(f"{counts['empty']:,} with an empty {text_field}")
        if errors:
            left_out.append(f"{errors:,} bad rows (listed apart)")
        report.warnings.append(
            f"{where}: {counts['read']:,} rows read; left out: {', '.join(left_out)}; {counts['folded']:,} repeats "
            f"of an earlier row's prompt folded into it; {len(prompts):,} prompts kept"
        )
    return prompts
