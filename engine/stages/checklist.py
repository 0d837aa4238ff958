"""Checklist: the grader writes 3–5 quality criteria for each prompt, once per prompt (cached by the store)."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import SamplingParams
from engine import taxonomy
from engine.parsing import parse_checklist
from engine.stages.base import IDX, BackendStage, Program, Request

REMINDER = "Write only the numbered list: 3 to 5 criteria, one per line, starting with '1.'."


def checklist_program(category: str | None, prompt: str, sampling: SamplingParams) -> Program:
    conversation = [{"role": "user", "content": taxonomy.checklist_prompt(category, prompt)}]
    (out,) = yield [Request(conversation, sampling)]
    if out.error is not None:
        return None, f"<error: {out.error}>", 1
    criteria = parse_checklist(out.texts[0])
    if criteria is not None:
        return criteria, out.texts[0], 1
    retry = conversation + [{"role": "assistant", "content": out.texts[0]}, {"role": "user", "content": REMINDER}]
    (again,) = yield [Request(retry, sampling)]
    raw2 = again.texts[0] if again.error is None else f"<error: {again.error}>"
    return (parse_checklist(raw2) if again.error is None else None), f"{out.texts[0]} ⟶ {raw2}", 2


class ChecklistStage(BackendStage):
    """Criteria per prompt; unparseable lists are recorded with criteria null and their raw text."""

    name = "checklist"
    required_inputs = {
        "prompt_id": "stable prompt id",
        "text": "the user prompt",
        "judge_category": "the prompt's category (gold, else classified; null: uncategorised)",
    }
    output_schema = pa.schema(
        [
            ("prompt_id", pa.string()),
            ("judge_category", pa.string()),
            ("grader", pa.string()),
            ("criteria", pa.list_(pa.string())),
            ("raw", pa.string()),
            ("calls", pa.int64()),
        ]
    )

    def __init__(self, model: dict[str, Any], max_tokens: int = 200) -> None:
        super().__init__(model)
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        results = self.drive([checklist_program(r["judge_category"], r["text"], self.sampling) for r in rows])
        for k, (r, (criteria, raw, calls)) in enumerate(zip(rows, results)):
            yield {IDX: k, "prompt_id": r["prompt_id"], "judge_category": r["judge_category"], "grader": self.model_name, "criteria": criteria,
                   "raw": raw, "calls": calls}
