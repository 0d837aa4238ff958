"""Accuracy on prompts with a verifiable gold answer: which check applies, and the short-answer grader.

- Math (MATH-500, or category D with a gold answer): the final answer is extracted and checked with math-verify in
  a guarded worker process (engine.method.math): never eval'd, a timeout on every check.
- Short answers (SimpleQA, or category A with a gold answer): an LLM grader (taxonomy.SHORT_ANSWER_GRADER) says
  correct / incorrect / not attempted; a normalised exact-containment match is kept beside it as a cross-check.
- Other prompts: no method, nothing checked.

Imports: engine.method (taxonomy, parsing, programs), actors.base.
"""

from __future__ import annotations

from actors.base import SamplingParams
from engine.method import taxonomy
from engine.method.parsing import parse_short_answer_grade
from engine.method.programs import Asked, Program, ask_until_parsed, text_of

# Bump when the accuracy checks change meaning (math-verify extraction, grading rules): accuracy shards key on it.
# 2: no final answer is incorrect (MATH-500's rule), and whether each response answered; 3: a unit after the number
# ("12 people") is text, not a product of letters; the last "answer is" of a line that says it twice is read;
# 4: an answer in parts is all its parts, a bracket or minus of the answer's own does not cut it; 5: a grader's
# "Correct answer: …" is no grade "correct".
ACCURACY_VERSION = "6"


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
    """Grade one short answer against the gold; returns an `Asked` whose value is "correct", "incorrect",
    "not_attempted" or None."""
    conversation = [{"role": "user", "content": taxonomy.short_answer_grader_prompt(prompt, gold, response)}]
    asked: Asked = yield from ask_until_parsed(conversation, sampling, text_of(parse_short_answer_grade),
                                               taxonomy.SHORT_ANSWER_REMINDER)
    return asked
