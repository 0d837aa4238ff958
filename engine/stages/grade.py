"""Grade: the grader scores each response 1–5 against the prompt's checklist (engine.method.quality)."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from engine.method.programs import first_token_sampling
from engine.method.quality import grade_program
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, BackendStage


class GradeStage(BackendStage):
    """Grades for every response of a group (a group without a checklist gets null grades)."""

    name = "grade"
    # Grade shards are keyed by it: bump when what a grade means changes (2: log-probs decide only where the text
    # gives that grade — "4/10" is no grade of 4; 3: a leading "1. Accuracy" opens a list, no grade of 1).
    version = "3"
    required_inputs = {
        **GROUP_INPUTS,
        "text": "the user prompt",
        "responses": "the group's responses",
        "criteria": "the prompt's checklist (null: none could be parsed)",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            ("grader", pa.string()),
            ("grades", pa.list_(pa.int64())),
            ("expected_grades", pa.list_(pa.float64())),
            ("raws", pa.list_(pa.string())),
        ]
    )

    def __init__(self, model: dict[str, Any], max_tokens: int = 3) -> None:
        super().__init__(model)
        # The grade is read like a verdict: from the first token's log-probs, or from text (the grader's `verdict`).
        self.sampling = first_token_sampling(model.get("verdict", "auto"), max_tokens)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        programs, owners = [], []
        for k, r in enumerate(rows):
            if r["criteria"]:
                for response in r["responses"]:
                    programs.append(grade_program(r["text"], list(r["criteria"]), response, self.sampling))
                    owners.append(k)
        per_row: dict[int, list] = {k: [] for k in range(len(rows))}
        for k, asked in zip(owners, self.drive(programs, owners)):
            per_row[k].append(asked)
        for k, r in enumerate(rows):
            asks = per_row[k]
            grades = [a.value[0] if a.value else None for a in asks] or [None] * len(r["responses"])
            expected = [a.value[1] if a.value else None for a in asks] or [None] * len(r["responses"])
            raws = [a.raw for a in asks] or ["<no checklist>"] * len(r["responses"])
            yield {IDX: k, "prompt_id": r["prompt_id"], "model": r["model"], "strategy": r["strategy"],
                   "grader": self.model_name, "grades": grades, "expected_grades": expected, "raws": raws}
