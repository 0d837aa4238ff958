"""MATH-500 (the 500-problem test subset of MATH from "Let's Verify Step by Step"), the paper's category D.

Format: JSONL, one object per problem with ``problem, solution, answer, subject, level, unique_id``
(openai/prm800k ``math_splits/test.jsonl``; the Hugging Face copy HuggingFaceH4/MATH-500 has the same fields).
``level`` is an integer 1–5; the original MATH files write it as "Level 3", which is accepted too. The reference
solution is kept in meta (the quality and accuracy stages may want it); it is never shown to the generator.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.inputs.loaders.common import PromptSink, optional_str, read_jsonl, required_value, text_value
from engine.inputs.prompts import LoadReport, Prompt, make_prompt

SOURCE = "math500"
LEVELS = (1, 2, 3, 4, 5)
_LEVEL_TEXT = re.compile(r"^\s*(?:level\s*)?([1-5])\s*$", re.IGNORECASE)


def parse_level(value: Any, path: str, line: int) -> int:
    """The difficulty level 1–5 from an int or a "Level N" string."""
    if isinstance(value, int) and not isinstance(value, bool) and value in LEVELS:
        return value
    if isinstance(value, str):
        m = _LEVEL_TEXT.match(value)
        if m:
            return int(m.group(1))
    raise InputError(path, line, "level", f"expected a level 1-5, got {value!r}")


def load(path: str | Path, *, on_error: str = "fail", report: LoadReport | None = None) -> list[Prompt]:
    """Load MATH-500 problems as category-D prompts with their gold answers.

    Args:
        path: the JSONL file.
        on_error: "fail" raises the first bad row; "skip" records it in `report` and goes on.
        report: collects skipped rows.

    Returns:
        One prompt per row, in file order: text = problem, gold_answer = answer, meta = subject, level (int),
        unique_id, solution.

    Raises:
        InputError: naming file, line and field (problem, answer, level, …).
    """
    path = Path(path)
    where = str(path)

    def build(row: dict[str, Any], line: int) -> Prompt:
        answer = required_value(row, "answer", where, line)
        if isinstance(answer, str):
            answer = answer.strip()
            if not answer:
                raise InputError(where, line, "answer", "empty answer (MATH-500 rows need their gold answer)")
        level = parse_level(required_value(row, "level", where, line), where, line)
        meta = {
            "subject": optional_str(row, "subject", where, line),
            "level": level,
            "unique_id": optional_str(row, "unique_id", where, line),
            "solution": optional_str(row, "solution", where, line),
        }
        return make_prompt(
            text_value(row, "problem", where, line),
            source=SOURCE,
            gold_category="D",
            gold_answer=answer,
            meta=meta,
            path=where,
            line=line,
            field_names={"text": "problem", "gold_answer": "answer"},
        )

    sink = PromptSink(path, on_error=on_error, report=report, text_field="problem")
    sink.add_rows(read_jsonl(path), build)
    return sink.prompts
