"""Checklist quality: criteria written once per prompt, then a 1–5 grade of each response against them.

As for judge verdicts, a grade is read from the first token's log-probs where the backend returns them (the most
probable digit 1–5, and the probability-weighted mean as the expected grade), else from the text. Answers that do
not parse are asked again once with the taxonomy's reminder, then recorded as None with their raw text.

Imports: engine.method (taxonomy, parsing, programs), actors.base.
"""

from __future__ import annotations

from actors.base import ChatOutput, SamplingParams
from engine.method import taxonomy
from engine.method.parsing import expected_grade, grade_logprobs, parse_checklist, parse_grade
from engine.method.programs import Asked, Program, ask_until_parsed, text_of


def checklist_program(category: str | None, prompt: str, sampling: SamplingParams) -> Program:
    """The criteria for one prompt; returns an `Asked` whose value is the list of criteria (or None)."""
    conversation = [{"role": "user", "content": taxonomy.checklist_prompt(category, prompt)}]
    asked: Asked = yield from ask_until_parsed(conversation, sampling, text_of(parse_checklist),
                                               taxonomy.CHECKLIST_REMINDER)
    return asked


def read_grade(out: ChatOutput) -> tuple[int, float | None] | None:
    """(grade, expected grade) of one output, or None when it holds no grade.

    With log-probs: the most probable of the digits 1–5 among the first token's top tokens, and their
    probability-weighted mean — when the digits together are the model's likeliest first token and the text
    gives that grade (a first token "4" of "4/10" or "4.5" is another scale: no grade). Otherwise (or without
    log-probs): the grade the text gives (engine.method.parsing.parse_grade: "4", "4/5", "Grade: 4"), no expected
    grade.
    """
    grade = parse_grade(out.texts[0] if out.texts else "")
    top = out.first_token_logprobs[0] if out.first_token_logprobs else None
    expected = expected_grade(top)
    if expected is not None and grade is not None:
        mass = grade_logprobs(top)  # a digit's variants ("4", " 4") summed, as in the expected grade
        best = max(mass, key=mass.get)
        if best == grade:
            return best, expected
    return None if grade is None else (grade, None)


def grade_program(prompt: str, criteria: list[str], response: str, sampling: SamplingParams) -> Program:
    """Grade one response; returns an `Asked` whose value is (grade, expected grade or None), or None."""
    conversation = [{"role": "user", "content": taxonomy.grade_prompt(prompt, criteria, response)}]
    asked: Asked = yield from ask_until_parsed(conversation, sampling, read_grade, taxonomy.GRADE_REMINDER)
    return asked
