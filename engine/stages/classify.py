"""Classify: a model assigns each prompt a category A–H (engine.method.classification)."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import SamplingParams
from engine.method.classification import classify_program
from engine.stages.base import IDX, BackendStage


class ClassifyStage(BackendStage):
    """Classification of prompts by one model (greedy)."""

    name = "classify"
    # Classify shards are keyed by it: bump when how an answer is read changes (2: a labelled article "A" and a
    # leading abbreviation, "E.g.", are no letters).
    version = "2"
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
        for k, (row, asked) in enumerate(zip(rows, results)):
            yield {IDX: k, "prompt_id": row["prompt_id"], "model": self.model_name, "category": asked.value,
                   "raw": asked.raw, "calls": asked.calls}
