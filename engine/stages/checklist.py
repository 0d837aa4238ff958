"""Checklist: the grader writes 3–5 quality criteria for each prompt, once per prompt (engine.method.quality)."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import SamplingParams
from engine.method.quality import checklist_program
from engine.stages.base import IDX, BackendStage


class ChecklistStage(BackendStage):
    """Criteria per prompt; unparseable lists are recorded with criteria null and their raw text."""

    name = "checklist"
    # Checklist shards are keyed by it: bump when how a checklist is read changes (2: sub-bullets under a criterion
    # are not criteria, bold items are items — a directory checklisted before kept the old criteria, and its grades).
    version = "2"
    required_inputs = {
        "prompt_id": "stable prompt id",
        "text": "the user prompt",
        "judge_category": "the prompt's category (gold, else the reference classification; null: uncategorised)",
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
        for k, (r, asked) in enumerate(zip(rows, results)):
            yield {IDX: k, "prompt_id": r["prompt_id"], "judge_category": r["judge_category"],
                   "grader": self.model_name, "criteria": asked.value, "raw": asked.raw, "calls": asked.calls}
