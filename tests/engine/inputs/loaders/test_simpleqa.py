import pytest

from engine.errors import InputError
from engine.inputs.loaders.simpleqa import load, parse_metadata
from engine.inputs.prompts import LoadReport

HEADER = "metadata,problem,answer"
META = "\"{'topic': 'Art', 'answer_type': 'Person', 'urls': ['https://example.org/a']}\""


# The real file (read from ../shared/datasets).
def test_real_file_loads_every_row_as_category_a(shared_file):
    prompts = load(shared_file("simpleqa/simple_qa_test_set.csv"))
    assert len(prompts) == 4326
    first = prompts[0]
    assert (first.text, first.gold_answer, first.gold_category, first.source) == (
        "Who received the IEEE Frank Rosenblatt Award in 2010?", "Michio Sugeno", "A", "simpleqa")
    assert first.meta["topic"] == "Science and technology" and first.meta["answer_type"] == "Person"
    assert first.meta["urls"][0] == "https://en.wikipedia.org/wiki/IEEE_Frank_Rosenblatt_Award"
    assert {p.gold_category for p in prompts} == {"A"} and all(p.gold_answer for p in prompts)


# Metadata is a Python literal: parsed as data, never run.
def test_metadata_literal_becomes_meta(write):
    (p,) = load(write("s.csv", [HEADER, f"{META},Who painted it?,Ann Smith"]))
    assert p.meta == {"topic": "Art", "answer_type": "Person", "urls": ["https://example.org/a"]}


@pytest.mark.parametrize(
    "raw",
    [
        "not a dict",
        "[1, 2]",
        "{'a': {1, 2}}",  # a set: a literal, but not JSON
        "{1: 'x'}",  # a non-string key
        "{'a': " + "[" * 5000 + "]" * 5000 + "}",  # nested beyond the parser's limit
        "{'a': '" + "x" * 30_000 + "'}",  # longer than any real cell
    ],
)
def test_metadata_that_is_not_a_json_dict_is_kept_raw(raw):
    assert parse_metadata(raw) is None


def test_metadata_code_is_never_executed(tmp_path, write):
    marker = tmp_path / "pwned"
    code = f"__import__('os').system('touch {marker}')"
    assert parse_metadata(code) is None
    (p,) = load(write("s.csv", [HEADER, f'"{code}",Who?,Bob']))
    assert p.meta == {"metadata": code}
    assert not marker.exists()


# Bad rows name file, line and the source's column.
@pytest.mark.parametrize(
    "row,field,message",
    [
        (f"{META},,Bob".encode(), "problem", "empty prompt text"),
        (f"{META},   ,Bob".encode(), "problem", "empty prompt text"),
        (f"{META},Who?,".encode(), "answer", "empty answer"),
        (f"{META},Who?".encode(), None, "expected 3 cells"),
        (f'{META},"Who?"x,Bob'.encode(), None, "malformed CSV row"),
        (f"{META},Caf".encode() + b"\xe9?,Bob", "problem", "invalid UTF-8"),
        (f"{META},Who\x00?,Bob".encode(), "problem", "NUL character"),
    ],
)
def test_bad_rows_name_file_line_and_field(write, row, field, message):
    path = write("s.csv", [HEADER, f"{META},Fine?,Yes", row])
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 3, field)


def test_missing_column_fails_the_file_even_in_skip_mode(write):
    path = write("s.csv", ["metadata,question,answer", f"{META},Who?,Bob"])
    with pytest.raises(InputError, match="missing column") as info:
        load(path, on_error="skip")
    assert (info.value.line, info.value.field) == (1, "problem")


def test_duplicate_question_names_both_lines(write):
    path = write("s.csv", [HEADER, f"{META},Who?,Bob", f"{META},Other?,Ann", f"{META},Who?,Bob"])
    with pytest.raises(InputError, match=r"duplicate prompt .*line 2") as info:
        load(path)
    assert (info.value.line, info.value.field) == (4, "problem")


def test_skip_mode_counts_bad_rows_and_keeps_the_rest(write):
    path = write("s.csv", [HEADER, f"{META},A?,1", f"{META},,2", f"{META},B?", f"{META},C?,3"])
    report = LoadReport()
    prompts = load(path, on_error="skip", report=report)
    assert [p.text for p in prompts] == ["A?", "C?"]
    assert [(e.line, e.field) for e in report.skipped] == [(3, "problem"), (4, None)]
