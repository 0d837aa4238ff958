"""Classify: the generating model self-classifies each prompt into a category A–H (the paper's Step 1).

Greedy decoding; an answer that names no category is asked again once with a reminder, then recorded with
category null and its raw text (never mapped to a category).
"""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import SamplingParams
from engine import taxonomy
from engine.parsing import parse_category
from engine.stages.base import IDX, BackendStage, Program, Request

REMINDER = "Answer with one letter only: A, B, C, D, E, F, G or H."


def classify_program(prompt: str, sampling: SamplingParams) -> Program:
    conversation = [{"role": "user", "content": taxonomy.classify_prompt(prompt)}]
    (out,) = yield [Request(conversation, sampling)]
    if out.error is not None:
        return None, f"<error: {out.error}>", 1
    raw = out.texts[0]
    category = parse_category(raw)
    if category is not None:
        return category, raw, 1
    retry = conversation + [{"role": "assistant", "content": raw}, {"role": "user", "content": REMINDER}]
    (out,) = yield [Request(retry, sampling)]
    raw2 = out.texts[0] if out.error is None else f"<error: {out.error}>"
    return (parse_category(raw2) if out.error is None else None), f"{raw} ⟶ {raw2}", 2


class ClassifyStage(BackendStage):
    """Self-classification of prompts by one model."""

    name = "classify"
    required_inputs = {"prompt_id": "stable prompt id", "text": "the user prompt"}
    output_schema = pa.schema(
        [
            ("prompt_id", pa.string()),
            ("model", pa.string()),
            ("category", pa.string()),
            ("raw", pa.string()),
            ("calls", pa.int64()),
        ]
    )

    def __init__(self, model: dict[str, Any], max_tokens: int = 8) -> None:
        super().__init__(model)
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        results = self.drive([classify_program(r["text"], self.sampling) for r in rows])
        for k, (row, (category, raw, calls)) in enumerate(zip(rows, results)):
            yield {IDX: k, "prompt_id": row["prompt_id"], "model": self.model_name, "category": category,
                   "raw": raw, "calls": calls}
