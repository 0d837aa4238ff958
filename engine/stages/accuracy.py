"""Accuracy: is each response correct, for prompts with a verifiable gold answer.

- Math (MATH-500, or category D with a gold answer): the final answer is extracted and checked with math-verify
  in a guarded worker process (engine.accuracy): never eval'd, a timeout on every check; "could not check" stays
  null, never "incorrect".
- Short answers (SimpleQA, or category A with a gold answer): an LLM grader (taxonomy.SHORT_ANSWER_GRADER) says
  correct / incorrect / not attempted; a normalised exact-containment match is kept beside it as a cross-check.
- Other groups: no method, nothing checked.
"""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import SamplingParams
from engine import taxonomy
from engine.accuracy import check_math_answer, short_answer_exact
from engine.parsing import parse_short_answer_grade
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, BackendStage, Program, Request

REMINDER = "Reply with one letter only: A, B or C."


def accuracy_method(source: str | None, category: str | None, gold_answer: str | None) -> str | None:
    """Which check applies to a prompt: "math-verify", "grader", or None."""
    if not gold_answer:
        return None
    if source == "math500" or category == "D":
        return "math-verify"
    if source == "simpleqa" or category == "A":
        return "grader"
    return None


def grader_program(prompt: str, gold: str, response: str, sampling: SamplingParams) -> Program:
    conversation = [{"role": "user", "content": taxonomy.short_answer_grader_prompt(prompt, gold, response)}]
    (out,) = yield [Request(conversation, sampling)]
    if out.error is not None:
        return None, f"<error: {out.error}>"
    grade = parse_short_answer_grade(out.texts[0])
    if grade is not None:
        return grade, out.texts[0]
    retry = conversation + [{"role": "assistant", "content": out.texts[0]}, {"role": "user", "content": REMINDER}]
    (again,) = yield [Request(retry, sampling)]
    if again.error is not None:
        return None, f"{out.texts[0]} ⟶ <error: {again.error}>"
    return parse_short_answer_grade(again.texts[0]), f"{out.texts[0]} ⟶ {again.texts[0]}"


class AccuracyStage(BackendStage):
    """Correctness of each response of the groups whose prompt has a gold answer.

    Args:
        model: the grader's spec (used for short answers only).
        math_timeout_s: wall-clock limit of one math-verify check.
    """

    name = "accuracy"
    required_inputs = {
        **GROUP_INPUTS,
        "text": "the user prompt",
        "source": "the prompt's source (simpleqa, math500, …)",
        "judge_category": "the prompt's category",
        "gold_answer": "the reference answer (null: nothing to check)",
        "responses": "the group's responses",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            ("method", pa.string()),
            ("correct", pa.list_(pa.bool_())),
            ("grades", pa.list_(pa.string())),
            ("extracted", pa.list_(pa.string())),
            ("exact", pa.list_(pa.bool_())),
            ("raws", pa.list_(pa.string())),
        ]
    )

    def __init__(self, model: dict[str, Any], math_timeout_s: float = 10.0) -> None:
        super().__init__(model)
        self.math_timeout_s = math_timeout_s
        self.sampling = SamplingParams(temperature=0.0, max_tokens=4)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        methods = [accuracy_method(r["source"], r["judge_category"], r["gold_answer"]) for r in rows]
        programs, owners = [], []
        for k, (r, method) in enumerate(zip(rows, methods)):
            if method == "grader":
                for response in r["responses"]:
                    programs.append(grader_program(r["text"], r["gold_answer"], response, self.sampling))
                    owners.append(k)
        graded: dict[int, list[tuple]] = {k: [] for k in range(len(rows))}
        for k, result in zip(owners, self.drive(programs)):
            graded[k].append(result)
        for k, (r, method) in enumerate(zip(rows, methods)):
            out = {IDX: k, "prompt_id": r["prompt_id"], "model": r["model"], "strategy": r["strategy"],
                   "method": method, "correct": [], "grades": [], "extracted": [], "exact": [], "raws": []}
            if method == "math-verify":
                for response in r["responses"]:
                    check = check_math_answer(response, r["gold_answer"], timeout_s=self.math_timeout_s)
                    out["correct"].append(check.correct)
                    out["grades"].append(None)
                    out["extracted"].append(check.extracted)
                    out["exact"].append(None)
                    out["raws"].append(check.reason)
            elif method == "grader":
                for response, (grade, raw) in zip(r["responses"], graded[k]):
                    out["correct"].append(None if grade is None else grade == "correct")
                    out["grades"].append(grade)
                    out["extracted"].append(None)
                    out["exact"].append(short_answer_exact(response, r["gold_answer"]))
                    out["raws"].append(raw)
            yield out
