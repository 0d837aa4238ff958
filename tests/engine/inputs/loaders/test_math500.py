import collections
import json

import pytest

from engine.errors import InputError
from engine.inputs.loaders.math500 import load
from engine.inputs.prompts import LoadReport


def row(**fields):
    base = {"problem": "What is 1+1?", "solution": "It is $\\boxed{2}$.", "answer": "2", "subject": "Algebra",
            "level": 1, "unique_id": "test/algebra/1.json"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


# The real file.
def test_real_file_has_500_problems_with_levels_and_answers(shared_file):
    prompts = load(shared_file("math500/test.jsonl"))
    assert len(prompts) == 500
    first = prompts[0]
    assert first.text.startswith("Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.")
    assert first.gold_answer == "\\left( 3, \\frac{\\pi}{2} \\right)" and first.gold_category == "D"
    assert (first.meta["unique_id"], first.meta["subject"], first.meta["level"]) == (
        "test/precalculus/807.json", "Precalculus", 2)
    assert collections.Counter(p.meta["level"] for p in prompts) == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    assert len({p.meta["unique_id"] for p in prompts}) == 500


def test_fields_map_to_prompt_and_meta(write):
    (p,) = load(write("m.jsonl", [row(level="Level 4", answer=12)]))
    assert (p.text, p.gold_answer, p.gold_category, p.source) == ("What is 1+1?", "12", "D", "math500")
    assert p.meta == {"subject": "Algebra", "level": 4, "unique_id": "test/algebra/1.json",
                      "solution": "It is $\\boxed{2}$."}


@pytest.mark.parametrize(
    "line,field,message",
    [
        (row(problem=...).encode(), "problem", "missing required field"),
        (row(problem="  ").encode(), "problem", "empty prompt text"),
        (row(problem=["x"]).encode(), "problem", "expected a string"),
        (row(answer=...).encode(), "answer", "missing required field"),
        (row(answer="").encode(), "answer", "empty answer"),
        (row(answer={"x": 1}).encode(), "answer", "expected a string"),
        (row(level=...).encode(), "level", "missing required field"),
        (row(level=7).encode(), "level", "expected a level 1-5"),
        (row(level="hard").encode(), "level", "expected a level 1-5"),
        (row(subject=["Algebra"]).encode(), "subject", "expected a string"),
        (row(problem="caf\u00e9").encode().replace(b"\\u00e9", b"\xe9"), None, "invalid UTF-8"),
        (b'{"problem": "x", ', None, "malformed JSON"),
        (b'"just a string"', None, "expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(write, line, field, message):
    path = write("m.jsonl", [row(problem="Fine?"), line])
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)


def test_duplicate_problem_names_both_lines(write):
    path = write("m.jsonl", [row(), row(problem="Other"), row(unique_id="x")])
    with pytest.raises(InputError, match=r"duplicate prompt .*line 1") as info:
        load(path)
    assert (info.value.line, info.value.field) == (3, "problem")


def test_skip_mode_counts_bad_rows_and_keeps_the_rest(write):
    path = write("m.jsonl", [row(problem="A"), row(level=9), "", "{broken", row(problem="B")])
    report = LoadReport()
    prompts = load(path, on_error="skip", report=report)
    assert [p.text for p in prompts] == ["A", "B"]
    assert [(e.line, e.field) for e in report.skipped] == [(2, "level"), (4, None)]
