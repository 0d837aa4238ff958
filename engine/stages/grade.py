"""Grade: the grader scores each response 1–5 against the prompt's checklist (engine.method.quality)."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from engine.method.judges import has_answer
from engine.method.programs import first_token_sampling
from engine.method.quality import grade_program
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, BackendStage


NO_ANSWER = "<no answer>"  # the raw of a response that gives none: not graded


class GradeStage(BackendStage):
    """Grades for every response of a group (a group without a checklist gets null grades, and so does a response
    that gives no answer: empty, a provider's filtered reply, a reasoning model cut off while thinking — no answer
    is never graded as one; raw "<no answer>")."""

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
                for i, response in enumerate(r["responses"]):
                    if has_answer(response):
                        programs.append(grade_program(r["text"], list(r["criteria"]), response, self.sampling))
                        owners.append((k, i))
        asked = dict(zip(owners, self.drive(programs, [k for k, _ in owners])))
        for k, r in enumerate(rows):
            n = len(r["responses"])
            if not r["criteria"]:
                grades, expected, raws = [None] * n, [None] * n, ["<no checklist>"] * n
            else:
                asks = [asked.get((k, i)) for i in range(n)]
                grades = [a.value[0] if a is not None and a.value else None for a in asks]
                expected = [a.value[1] if a is not None and a.value else None for a in asks]
                raws = [a.raw if a is not None else NO_ANSWER for a in asks]
            yield {IDX: k, "prompt_id": r["prompt_id"], "model": r["model"], "strategy": r["strategy"],
                   "grader": self.model_name, "grades": grades, "expected_grades": expected, "raws": raws}
