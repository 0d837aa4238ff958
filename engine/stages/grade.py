"""Grade: the grader scores each response 1–5 against the prompt's checklist."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import ChatOutput, SamplingParams
from engine import taxonomy
from engine.parsing import expected_grade, parse_grade
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, BackendStage, Program, Request

REMINDER = "Answer with a single digit from 1 to 5."


def read_grade(out: ChatOutput) -> tuple[int | None, float | None]:
    """(grade, expected grade) of one output.

    As for judge verdicts, the first token's log-probs decide where the backend returns them: the grade is the most
    probable of the digits 1–5 among the top tokens, the expected grade their probability-weighted mean. Without
    log-probs (or with no digit among them) the grade is the first digit 1–5 in the text.
    """
    top = out.first_token_logprobs[0] if out.first_token_logprobs else None
    expected = expected_grade(top)
    if expected is not None:
        digits = {int(t.strip()): lp for t, lp in top.items() if t.strip() in {"1", "2", "3", "4", "5"}}
        return max(digits, key=digits.get), expected
    return parse_grade(out.texts[0] if out.texts else ""), None


def grade_program(prompt: str, criteria: list[str], response: str, sampling: SamplingParams) -> Program:
    """Grade one response; an answer with no grade is asked again once with a reminder, then recorded null."""
    conversation = [{"role": "user", "content": taxonomy.grade_prompt(prompt, criteria, response)}]
    (out,) = yield [Request(conversation, sampling)]
    if out.error is not None:
        return None, None, f"<error: {out.error}>"
    raw = out.texts[0]
    grade, expected = read_grade(out)
    if grade is not None:
        return grade, expected, raw
    retry = conversation + [{"role": "assistant", "content": raw}, {"role": "user", "content": REMINDER}]
    (again,) = yield [Request(retry, sampling)]
    if again.error is not None:
        return None, None, f"{raw} ⟶ <error: {again.error}>"
    grade, expected = read_grade(again)
    return grade, expected, f"{raw} ⟶ {again.texts[0]}"


class GradeStage(BackendStage):
    """Grades for every response of a group (a group without a checklist gets null grades)."""

    name = "grade"
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
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, logprobs=20)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        programs, owners = [], []
        for k, r in enumerate(rows):
            if r["criteria"]:
                for response in r["responses"]:
                    programs.append(grade_program(r["text"], list(r["criteria"]), response, self.sampling))
                    owners.append(k)
        per_row: dict[int, list[tuple]] = {k: [] for k in range(len(rows))}
        for k, result in zip(owners, self.drive(programs)):
            per_row[k].append(result)
        for k, r in enumerate(rows):
            results = per_row[k] or [(None, None, "<no checklist>")] * len(r["responses"])
            yield {
                IDX: k,
                "prompt_id": r["prompt_id"],
                "model": r["model"],
                "strategy": r["strategy"],
                "grader": self.model_name,
                "grades": [g for g, _, _ in results],
                "expected_grades": [e for _, e, _ in results],
                "raws": [raw for _, _, raw in results],
            }
