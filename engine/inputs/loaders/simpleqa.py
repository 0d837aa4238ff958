"""SimpleQA (Wei et al. 2024): short fact-seeking questions with one correct answer, the paper's category A.

Format: the CSV that openai/simple-evals downloads (`simple_qa_test_set.csv`, 4326 rows) with columns
``metadata, problem, answer``. ``metadata`` is a Python dict literal with single quotes
(``{'topic': ..., 'answer_type': ..., 'urls': [...]}``), so it is read with `ast.literal_eval`, which builds
literals only and never runs code. A metadata cell that is not such a dict (or too long to be one) is kept as the raw
string under ``meta["metadata"]`` rather than failing the row: the question and answer are what matter.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import orjson

from engine.errors import InputError
from engine.inputs.loaders.common import PromptSink, read_csv, text_value
from engine.inputs.prompts import LoadReport, Prompt, make_prompt

SOURCE = "simpleqa"
COLUMNS = ("metadata", "problem", "answer")
# Real metadata cells are a few hundred characters; literal_eval on a huge or deeply nested cell costs memory and
# can overflow the parser's stack, so such cells are kept raw instead of parsed.
MAX_METADATA_CHARS = 20_000


def parse_metadata(raw: str) -> dict[str, Any] | None:
    """The metadata cell as a dict, or None when it is not a JSON-compatible dict literal.

    Args:
        raw: the cell, e.g. ``"{'topic': 'Art', 'answer_type': 'Person', 'urls': ['https://…']}"``.

    Returns:
        The dict (string keys, JSON-serialisable values), or None.
    """
    if len(raw) > MAX_METADATA_CHARS:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    try:
        # Literals may hold sets, bytes, tuples as keys…; meta must round-trip through JSON.
        return orjson.loads(orjson.dumps(value))
    except (orjson.JSONEncodeError, TypeError):
        return None


def load(path: str | Path, *, on_error: str = "fail", report: LoadReport | None = None) -> list[Prompt]:
    """Load SimpleQA questions as category-A prompts with their gold answers.

    Args:
        path: the CSV file.
        on_error: "fail" raises the first bad row; "skip" records it in `report` and goes on.
        report: collects skipped rows.

    Returns:
        One prompt per row, in file order: text = problem, gold_answer = answer, meta = the parsed metadata.

    Raises:
        InputError: naming file, line and column (problem, answer) for a bad row, or the file for a missing file or
            column.
    """
    path = Path(path)
    where = str(path)

    def build(row: dict[str, Any], line: int) -> Prompt:
        answer = row["answer"].strip()
        if not answer:
            raise InputError(where, line, "answer", "empty answer (SimpleQA rows need their gold answer)")
        metadata = parse_metadata(row["metadata"])
        meta = metadata if metadata is not None else {"metadata": row["metadata"]}
        return make_prompt(
            text_value(row, "problem", where, line),
            source=SOURCE,
            gold_category="A",
            gold_answer=answer,
            meta=meta,
            path=where,
            line=line,
            field_names={"text": "problem", "gold_answer": "answer"},
        )

    sink = PromptSink(path, on_error=on_error, report=report, text_field="problem")
    sink.add_rows(read_csv(path, required=COLUMNS), build)
    return sink.prompts
