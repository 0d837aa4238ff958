import dataclasses
import json

import pytest

from engine.errors import InputError
from engine.inputs.prompts import BUILTIN_PATH, LoadReport, load_jsonl_prompts, prompt_id, select
from engine.method.taxonomy import LETTERS


def write(tmp_path, lines, name="p.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"\n".join(l if isinstance(l, bytes) else l.encode() for l in lines) + b"\n")
    return path


# The built-in set.
def test_builtin_set_covers_every_category_with_gold_labels():
    prompts = load_jsonl_prompts(BUILTIN_PATH, source="builtin")
    counts = {c: sum(p.gold_category == c for p in prompts) for c in LETTERS}
    assert len(prompts) >= 40 and min(counts.values()) >= 5, counts
    for p in prompts:
        if p.gold_category in ("A", "D"):
            assert p.gold_answer, f"verifiable prompt without a gold answer: {p.text}"


def test_prompt_ids_are_stable_and_source_dependent():
    assert prompt_id("builtin", "x") == prompt_id("builtin", "x")
    assert prompt_id("builtin", "x") != prompt_id("other", "x")
    assert len(prompt_id("s", "t")) == 16


def test_loads_fields_and_extra_into_meta(tmp_path):
    path = write(tmp_path, [json.dumps({"text": "hi", "gold_category": "g", "gold_answer": 42, "topic": "x"})])
    (p,) = load_jsonl_prompts(path)
    assert (p.text, p.gold_category, p.gold_answer, p.source, p.meta) == ("hi", "G", "42", "p", {"topic": "x"})


def test_a_prompt_over_the_length_cap_is_said_at_the_line_it_was_read_from(tmp_path):
    # The line came from the prompt's meta, which no loader sets: None, or a user's own `line` field.
    from engine.inputs.prompts import over_prompt_cap

    path = write(tmp_path, [json.dumps({"text": "short"}), json.dumps({"text": "x" * 20, "line": "xyz"})])
    prompts = load_jsonl_prompts(path)
    (error,) = over_prompt_cap(prompts, 10, "prompts").values()
    assert (error.path, error.line, error.field) == (str(path), 2, "text")
    assert prompts[1] == dataclasses.replace(prompts[1], origin=None)  # where it was read is no part of the prompt


def test_a_whole_number_gold_answer_read_as_a_float_is_that_number(tmp_path):
    # A column of whole numbers with a gap is float64 in a DataFrame's Parquet file: 391 was read "391.0", which
    # "The answer is 391" does not match — a right answer graded wrong, unsaid.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.inputs.responses import load_responses

    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"],
                             "gold_answer": pa.array([391.0, None, 2.5], pa.float64())}), path)
    prompts, _ = load_responses(path)
    assert [p.gold_answer for p in prompts] == ["391", None, "2.5"]
    (p,) = load_jsonl_prompts(write(tmp_path, [json.dumps({"text": "hi", "gold_answer": 1969.0})]))
    assert p.gold_answer == "1969"
    pq.write_table(pa.table({"prompt": ["a"], "response": ["x"], "gold_answer": [float("nan")]}), path)
    with pytest.raises(InputError, match=r"r\.parquet:1: field 'gold_answer': expected an answer, got the number nan"):
        load_responses(path)


def test_a_key_named_twice_only_inside_a_value_or_a_nested_object_is_no_repeat(tmp_path):
    path = write(tmp_path, [b'{"text": "say \\"text\\": twice", "meta": {"a": 1, "text": 2}}'])
    (prompt,) = load_jsonl_prompts(path)
    assert prompt.text == 'say "text": twice'


# Bad input: each error names file, line and field.
@pytest.mark.parametrize(
    "line,field,message",
    [
        (b'{"text": "ok"', None, "malformed JSON"),
        (b'["text"]', None, "expected a JSON object"),
        (b'{"gold_category": "A"}', "text", "missing required field"),
        (b'{"text": 3}', "text", "expected a string"),
        (b'{"text": "   "}', "text", "empty prompt"),
        (b'{"text": "x", "gold_category": "Q"}', "gold_category", "expected one of A-H"),
        (b'{"text": "x", "meta": [1]}', "meta", "expected an object"),
        (b'{"text": "caf\xe9"}', None, "invalid UTF-8"),
        # bool is an int to isinstance: a JSON true once passed as a number and broke the prompts table, no line.
        (b'{"text": "x", "gold_answer": true}', "gold_answer", "got a boolean"),
        # The last one was kept without a word (the YAML loader refuses a repeated key); nested repeats and a key's
        # name inside a value are not the row's.
        (b'{"text": "b", "gold_category": "A", "text": "c"}', "text", "given twice in the row"),
        (b'{"text": "b", "\\u0074ext": "c"}', "text", "given twice in the row"),  # the same key, escaped
        # Deeper than the standard library's parser reads (orjson reads 1,024 levels): a RecursionError escaped.
        (b'{"text": "x", "meta": {"text": ' + b'[' * 1010 + b']' * 1010 + b'}}', None, "nested too deeply"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, line, field, message):
    path = write(tmp_path, [b'{"text": "fine"}', line])
    with pytest.raises(InputError, match=message) as info:
        load_jsonl_prompts(path)
    assert info.value.path == str(path) and info.value.line == 2 and info.value.field == field
    assert f"{path}:2" in str(info.value)


def test_a_row_of_many_keys_is_checked_for_repeats_in_one_pass(tmp_path):
    # A count per key scanned the line once per key: 80,000 keys took 53 s a line (a responses file of a few MB,
    # hours). Nested repeats and a key's name inside a value are not the row's.
    import time

    wide = b'{"text": "x", "meta": {' + b", ".join(b'"k%d": 1' % k for k in range(80_000)) + b"}}"
    nested = b'{"text": "y", "meta": {"text": "text", "a": {"text": 1}}}'
    # A key repeated at another depth sends the line to the second parse, which counted per key too.
    both = b'{"text": "z", "meta": {' + b", ".join(b'"k%d": 1' % k for k in range(80_000)) + b', "x": {"k0": 1}}}'
    path = write(tmp_path, [wide, nested, both])
    started = time.perf_counter()
    assert [p.text for p in load_jsonl_prompts(path)] == ["x", "y", "z"]
    assert time.perf_counter() - started < 5


def test_a_byte_order_mark_before_the_first_line_is_dropped(tmp_path):
    # As CSV's is (a Windows editor's "UTF-8" writes one); before, line 1 was refused as malformed JSON.
    path = write(tmp_path, [b'\xef\xbb\xbf{"text": "first"}', b'{"text": "second"}'])
    assert [p.text for p in load_jsonl_prompts(path)] == ["first", "second"]
    # Only at the start of the file: elsewhere it is not a byte-order mark, and the line is refused as before.
    path = write(tmp_path, [b'{"text": "first"}', b'\xef\xbb\xbf{"text": "second"}'])
    with pytest.raises(InputError, match="malformed JSON") as info:
        load_jsonl_prompts(path)
    assert info.value.line == 2


def test_a_boolean_gold_answer_in_a_responses_file_names_the_field(tmp_path):
    from engine.inputs.responses import load_responses

    path = write(tmp_path, [json.dumps({"prompt": "Is 7 prime?", "response": "Yes", "gold_answer": True})],
                 name="r.jsonl")
    with pytest.raises(InputError, match="got a boolean") as info:
        load_responses(path)
    assert (info.value.line, info.value.field) == (1, "gold_answer")


def test_duplicate_prompts_are_an_error(tmp_path):
    path = write(tmp_path, ['{"text": "same"}', '{"text": "other"}', '{"text": "same"}'])
    with pytest.raises(InputError, match="duplicate prompt .*line 1"):
        load_jsonl_prompts(path)


def test_skip_mode_counts_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, ['{"text": "a"}', "{oops", '{"text": ""}', '{"text": "b"}'])
    report = LoadReport()
    prompts = load_jsonl_prompts(path, on_error="skip", report=report)
    assert [p.text for p in prompts] == ["a", "b"]
    assert [e.line for e in report.skipped] == [2, 3]


def test_blank_lines_are_ignored_and_line_numbers_kept(tmp_path):
    path = write(tmp_path, ['{"text": "a"}', "", '{"text": 1}'])
    with pytest.raises(InputError) as info:
        load_jsonl_prompts(path)
    assert info.value.line == 3


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_jsonl_prompts(tmp_path / "none.jsonl")


def test_select_per_category_and_limit():
    prompts = load_jsonl_prompts(BUILTIN_PATH, source="builtin")
    two = select(prompts, per_category=2)
    assert len(two) == 16
    assert len(select(prompts, per_category=2, limit=5)) == 5


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_a_csv_or_parquet_file_given_as_json_lines_is_refused_once_by_its_type(tmp_path, on_error):
    # Read as JSON lines, every row was "malformed JSON" (under skip: every row skipped, then "no prompts").
    path = tmp_path / "prompts.csv"
    path.write_text("text,gold_category\nWhat is 2+2?,A\n")
    with pytest.raises(InputError, match=r"a \.csv file where JSON lines \(\.jsonl\) are read") as info:
        load_jsonl_prompts(path, on_error=on_error)
    assert info.value.path == str(path) and info.value.line is None


@pytest.mark.parametrize("source", [None, "builtin"])  # the jsonl and builtin prompt sources
def test_a_nul_character_in_prompt_text_is_refused_as_the_benchmark_loaders_refuse_it(tmp_path, source):
    path = write(tmp_path, ['{"text": "fine"}', '{"text": "nul\\u0000x"}'])
    with pytest.raises(InputError, match="NUL character") as info:
        load_jsonl_prompts(path, source=source)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, "text")
    report = LoadReport()
    assert [p.text for p in load_jsonl_prompts(path, source=source, on_error="skip", report=report)] == ["fine"]
    assert [e.line for e in report.skipped] == [2]
