import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InputError
from engine.inputs.loaders.wildbench import load
from engine.inputs.prompts import LoadReport

from .conftest import TEST_DATA

SAMPLE = TEST_DATA / "wildbench_sample.jsonl"


def turn(role, content):
    return {"content": content, "language": "English", "redacted": False, "role": role,
            "timestamp": "2024-01-01 00:00:00", "toxic": False}


def row(**fields):
    base = {"id": "x", "session_id": "s1", "conversation_input": [turn("user", "Hello?")], "checklist": ["c"],
            "primary_tag": "Information seeking", "secondary_tags": [], "intent": "i", "length": 1,
            "references": {"gpt-4": "Hi."}}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


# The fixture, in the dataset card's row format.
def test_sample_rows_load_with_their_last_user_turn_and_meta():
    prompts = load(SAMPLE)
    assert len(prompts) == 4 and {p.gold_category for p in prompts} == {None} and prompts[0].source == "wildbench"
    first = prompts[0]
    assert first.text.startswith("Write a short poem about a lighthouse keeper")
    assert first.meta["session_id"] == "a1f3c9d2e4b5a6978812c3d4e5f60718"
    assert first.meta["primary_tag"] == "Creative Writing"
    assert len(first.meta["checklist"]) == 3 and "history" not in first.meta and first.meta["n_turns"] == 1


def test_multi_turn_rows_keep_the_earlier_turns_in_meta():
    from engine.config import PromptsConfig
    from engine.inputs.prompts import LoadReport
    from engine.inputs.sources import load_prompts

    report = LoadReport()
    multi = load_prompts(PromptsConfig(source="wildbench", path=str(SAMPLE)), report)[2]
    # The generator sees the last turn alone: the source that keeps such rows says how many.
    assert report.warnings == [f"{SAMPLE}: 1 of 4 prompts are the last user turn of a longer conversation; the "
                               "generator sees that turn alone, without the turns before it"]
    assert multi.text == "Should I split the week between Lisbon and Porto, or stay in one city and do day trips?"
    assert [t["role"] for t in multi.meta["history"]] == ["user", "assistant"] and multi.meta["n_turns"] == 3
    assert multi.meta["history"][0]["content"] == "I'm planning a week-long trip to Portugal in November."


def test_parquet_rows_load_like_jsonl(tmp_path):
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert [(p.prompt_id, p.meta) for p in load(path)] == [(p.prompt_id, p.meta) for p in load(SAMPLE)]


def test_parquet_rows_errors_name_the_row_number(tmp_path):
    rows = [json.loads(row(session_id="a")), json.loads(row(session_id="b", conversation_input=[turn("user", " ")]))]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError, match="empty prompt text") as info:
        load(path)
    assert (info.value.line, info.value.field) == (2, "conversation_input[0].content")


@pytest.mark.parametrize(
    "line,field,message",
    [
        (row(session_id=...), "session_id", "missing required field"),
        (row(session_id=""), "session_id", "expected a non-empty string"),
        (row(conversation_input=...), "conversation_input", "missing required field"),
        (row(conversation_input="Hello?"), "conversation_input", "expected a list of turns"),
        (row(conversation_input=[]), "conversation_input", "empty conversation"),
        (row(conversation_input=["Hello?"]), "conversation_input[0]", "expected an object"),
        (row(conversation_input=[turn("assistant", "Hi")]), "conversation_input", "no user turn"),
        (row(conversation_input=[turn("user", "a"), turn("assistant", "b"), turn("user", "")]),
         "conversation_input[2].content", "empty prompt text"),
        (row(conversation_input=[turn("user", None)]), "conversation_input[0].content", "missing required field"),
        (row(conversation_input=[turn("user", 5), turn("user", "ok")]), "conversation_input[0].content",
         "expected a string"),
        (row(checklist="not a list"), "checklist", "expected a list of strings"),
        (row(conversation_input=[turn("user", "caf\u00e9")]).replace("\\u00e9", "\udce9"), None, "invalid UTF-8"),
        ('{"session_id": "s"', None, "malformed JSON"),
    ],
)
def test_bad_rows_name_file_line_and_field(write, line, field, message):
    raw = line.encode("utf-8", errors="surrogateescape")
    path = write("w.jsonl", [row(conversation_input=[turn("user", "Fine")]), raw])
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)


def test_other_file_types_are_refused(write):
    with pytest.raises(InputError, match="unsupported file type"):
        load(write("w.csv", ["session_id"]))


def test_duplicate_prompt_names_both_lines(write):
    with pytest.raises(InputError, match=r"duplicate prompt .*line 1") as info:
        load(write("w.jsonl", [row(session_id="a"), row(session_id="b")]))
    assert info.value.line == 2


def test_skip_mode_counts_bad_rows_and_keeps_the_rest(write):
    path = write("w.jsonl", [row(), row(conversation_input=[]), "oops",
                             row(conversation_input=[turn("user", "Second")])])
    report = LoadReport()
    assert [p.text for p in load(path, on_error="skip", report=report)] == ["Hello?", "Second"]
    assert [(e.line, e.field) for e in report.skipped] == [(2, "conversation_input"), (3, None)]


def test_conversations_ending_in_the_same_turn_are_one_prompt_not_a_failed_load(write):
    # The generator sees the last user turn only: two sessions ending in "continue" after different histories are
    # one prompt to it. They were refused as a duplicate, which under on_error: fail stopped the paper's load.
    a = row(session_id="a", conversation_input=[turn("user", "Write a poem."), turn("assistant", "Roses…"),
                                                turn("user", "continue")])
    b = row(session_id="b", conversation_input=[turn("user", "Write a story."), turn("assistant", "Once…"),
                                                turn("user", "continue")])
    (prompt,) = load(write("w.jsonl", [a, b, row(session_id="c")]))[:1]
    assert prompt.text == "continue" and prompt.meta["merged_sessions"] == ["a", "b"]
    assert prompt.meta["history"][0]["content"] == "Write a poem."
    # A session asking it alone makes it a prompt of its own, whatever came first (the preset draws single turns).
    alone = row(session_id="d", conversation_input=[turn("user", "continue")])
    (prompt,) = load(write("w2.jsonl", [a, alone]))
    assert prompt.meta["merged_sessions"] == ["a", "d"] and prompt.meta["n_turns"] == 1 and "history" not in prompt.meta
