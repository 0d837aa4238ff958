import math

import pytest

from engine.method.parsing import (
    expected_grade,
    p_yes_from_logprobs,
    parse_category,
    parse_checklist,
    parse_grade,
    parse_short_answer_grade,
    parse_verdict,
    split_responses,
)


# Classification letters.
@pytest.mark.parametrize(
    "raw,letter",
    [
        ("G", "G"),
        ("G.", "G"),
        (" (D) ", "D"),
        ("Category: E", "E"),
        ("category: h", "H"),
        ("The category is B.", "B"),
        ("Answer: C", "C"),
        ("F. Encyclopedia inquiry", "F"),
        ("**A**", "A"),
        ("A", "A"),
        ("Creative writing", "G"),
        ("H\nbecause it asks for advice", "H"),
    ],
)
def test_parse_category_accepts(raw, letter):
    assert parse_category(raw) == letter


@pytest.mark.parametrize(
    "raw",
    ["", "I think so", "A story about a dog", "a", "Z", "Creative writing or advice or opinions", "The answer is a cat"],
)
def test_parse_category_rejects_non_answers(raw):
    assert parse_category(raw) is None


# System-prompt sampling: n responses in one completion.
def test_split_headers():
    raw = "### Response 1\nfirst\n### Response 2\nsecond one\n### Response 3\nthird"
    assert split_responses(raw, 3) == ["first", "second one", "third"]


def test_split_drops_preamble_and_keeps_lists_inside_a_response():
    raw = "Sure! Here they are.\n### Response 1\nsteps:\n1. a\n2. b\n### Response 2\nother"
    assert split_responses(raw, 2) == ["steps:\n1. a\n2. b", "other"]


def test_split_inline_and_bold_headers():
    assert split_responses("Response 1: a\nResponse 2: b", 2) == ["a", "b"]
    assert split_responses("**Response 1:**\na\n**Response 2:**\nb", 2) == ["a", "b"]


def test_split_falls_back_to_a_numbered_list():
    assert split_responses("1. alpha\n2. beta\n3. gamma", 3) == ["alpha", "beta", "gamma"]


def test_split_short_and_empty():
    assert split_responses("### Response 1\nonly one", 5) == ["only one"]
    assert split_responses("no structure at all", 5) == []
    assert split_responses("### Response 1\n\n### Response 2\nb", 2) == ["b"]


def test_split_caps_at_n():
    raw = "\n".join(f"### Response {k}\nr{k}" for k in range(1, 8))
    assert split_responses(raw, 5) == ["r1", "r2", "r3", "r4", "r5"]


def test_split_ignores_out_of_sequence_numbers():
    raw = "### Response 1\na\n### Response 3\nstill a\n### Response 2\nb"
    assert split_responses(raw, 5) == ["a\n### Response 3\nstill a", "b"]


# YES/NO verdicts.
@pytest.mark.parametrize("raw,verdict", [("YES", True), ("yes.", True), ("No, they differ", False),
                                         (" NO", False), ("**Yes**", True), ("maybe", None), ("", None)])
def test_parse_verdict(raw, verdict):
    assert parse_verdict(raw) is verdict


def test_p_yes_normalises_over_yes_and_no_variants():
    p = p_yes_from_logprobs({"YES": math.log(0.3), " yes": math.log(0.1), "No": math.log(0.2), "The": math.log(0.4)})
    assert p == pytest.approx(0.4 / 0.6)


def test_p_yes_none_without_yes_or_no():
    assert p_yes_from_logprobs({"The": -0.1, "Maybe": -2.0}) is None
    assert p_yes_from_logprobs(None) is None
    assert p_yes_from_logprobs({}) is None


def test_p_yes_only_no():
    assert p_yes_from_logprobs({"NO": -0.2}) == 0.0


# Checklists and grades.
def test_checklist_parses_3_to_5_items():
    assert parse_checklist("1. a\n2. b\n3. c") == ["a", "b", "c"]
    assert parse_checklist("- a\n- b\n- c\n- d\n- e\n- f") == ["a", "b", "c", "d", "e"]
    assert parse_checklist("1. a\n2. b") is None


@pytest.mark.parametrize("raw,grade", [("4", 4), ("Grade: 5/5", 5), (" 3.", 3), ("10", None), ("3.5", None),
                                       ("six", None), ("0", None)])
def test_parse_grade(raw, grade):
    assert parse_grade(raw) == grade


def test_expected_grade():
    assert expected_grade({"4": math.log(0.5), "5": math.log(0.5), "x": -1}) == pytest.approx(4.5)
    assert expected_grade({"x": -1}) is None


@pytest.mark.parametrize("raw,grade", [("A", "correct"), ("B", "incorrect"), ("C", "not_attempted"),
                                       ("Incorrect.", "incorrect"), ("correct", "correct"), ("D", None)])
def test_short_answer_grade(raw, grade):
    assert parse_short_answer_grade(raw) == grade
