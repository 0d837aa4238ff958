"""Checklist quality: grades read from log-probs or text, one reminder, the checklist in the prompt."""

import math

import pytest

from actors.base import ChatOutput, SamplingParams
from engine.method.programs import drive
from engine.method.programs import Asked
from engine.method.quality import grade_program, read_grade


def out(text, top=None):
    return ChatOutput(texts=[text], first_token_logprobs=[top] if top is not None else None)


def test_grade_from_logprobs_takes_the_most_probable_digit():
    # The digits together (0.4) outweigh the most probable other token (0.35), so the first token is a grade.
    grade, expected = read_grade(out("4", {"The": math.log(0.35), "4": math.log(0.3), "2": math.log(0.1)}))
    assert grade == 4 and expected == pytest.approx(3.5)


def test_grade_from_text_when_the_first_token_is_most_likely_not_a_digit():
    # A digit among the top tokens with next to no mass (P ~ 1e-5) is no grade: the text decides, as without
    # log-probs (here it holds none, so the grade is unparsed and the reminder follows).
    top = {"**": -0.0001, "Grade": -9.0, "1": -11.5, "I": -11.8}
    assert read_grade(out("**Grade", top)) is None
    assert read_grade(out("**Grade:** 4", top)) == (4, None)


def test_a_digits_variants_count_together_for_the_grade_as_for_the_expected_grade():
    # Top-k lists hold "4" and " 4" apart: the grade is the digit of most probability summed over its variants
    # (before, the later variant replaced the earlier: 5 here, beside an expected grade nearer 4).
    grade, expected = read_grade(out("4", {"4": math.log(0.45), "5": math.log(0.37), " 4": math.log(0.1)}))
    assert grade == 4 and expected == pytest.approx((4 * 0.55 + 5 * 0.37) / 0.92)


def test_grade_from_text_without_logprobs():
    assert read_grade(out("Grade: 5")) == (5, None)
    assert read_grade(out("no digit here")) is None


def test_grade_from_text_when_logprobs_hold_no_digit():
    assert read_grade(out("3", {"The": -0.1})) == (3, None)


class Script:
    name = "script"

    def __init__(self, texts):
        self.texts = list(texts)
        self.seen = []

    def chat(self, conversations, sampling):
        self.seen.extend(conversations)
        return [out(self.texts.pop(0)) for _ in conversations]

    def close(self):
        pass


def test_unparsed_grade_is_retried_once_then_null():
    backend = Script(["great answer", "really great"])
    (result,) = drive(backend, [grade_program("p", ["a", "b", "c"], "r", SamplingParams(temperature=0))])
    assert result == Asked(None, "great answer ⟶ really great", 2)
    assert backend.seen[1][-1]["content"].startswith("Answer with a single digit")


def test_grade_prompt_carries_the_checklist_and_response():
    backend = Script(["4"])
    (result,) = drive(backend, [grade_program("the prompt", ["crit one", "crit two", "crit three"], "the response",
                                              SamplingParams(temperature=0))])
    text = backend.seen[0][0]["content"]
    assert result.value == (4, None) and "1. crit one" in text and "the response" in text and "the prompt" in text


@pytest.mark.parametrize("text,grade", [("4", 4), ("4/5", 4), ("4/10", None), ("4.5", None), ("10/10", None)])
def test_a_grade_from_log_probs_needs_the_text_to_give_it(text, grade):
    # The first token "4" of "4/10" (or "1" of "10/10", digits split) was read as a grade on the 1–5 scale.
    first = {text[0]: -0.1, "3": -2.5, "5": -3.0}
    read = read_grade(ChatOutput(texts=[text], first_token_logprobs=[first]))
    assert (read[0] if read else None) == grade
    if grade is not None:
        assert read[1] is not None  # read from the log-probs: an expected grade beside it
