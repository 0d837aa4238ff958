import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InputError
from engine.inputs.loaders.community_alignment import load
from engine.inputs.prompts import LoadReport

from .conftest import TEST_DATA

SAMPLE = TEST_DATA / "community_alignment_sample.csv"
HEADER = "conversation_id,assigned_lang,is_pregenerated_first_prompt,first_turn_prompt"


def sample_rows():
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# The fixture, in the Hugging Face CSV's layout.
def test_english_first_turns_one_prompt_per_distinct_text():
    prompts = load(SAMPLE)
    assert [p.text.split("\n")[0] for p in prompts] == [
        "Is it ever acceptable to lie to protect someone's feelings?",
        "How should families divide care for an elderly parent",
        "What role should religion play in public schools?",
    ]
    assert {p.gold_category for p in prompts} == {None} and prompts[0].source == "community_alignment"
    shared = prompts[0].meta
    assert (shared["rows"], shared["conversation_ids"], shared["conversation_id"]) == (
        2, ["conv-0001", "conv-0002"], "conv-0001")
    assert prompts[1].meta["is_pregenerated_first_prompt"] is False and prompts[1].meta["assigned_lang"] == "en"


def test_language_filter_can_be_turned_off():
    assert len(load(SAMPLE, lang=None)) == 5
    assert [p.meta["assigned_lang"] for p in load(SAMPLE, lang="fr")] == ["fr"]


def test_text_field_is_configurable_and_empty_string_sentinel_is_empty():
    # conv-0002 (line 3) and conv-0005 (line 7: conv-0004 spans lines 5-6) hold the literal "EMPTY STRING": no such
    # turn, left out and counted (before, "empty prompt text" errors that stopped a run under on_error: fail); the
    # fr and hi rows are filtered out before their text is looked at.
    report = LoadReport()
    prompts = load(SAMPLE, text_field="second_turn_prompt", report=report)
    assert [p.text for p in prompts] == ["What if the person later finds out?", "What if one sibling refuses to pay?"]
    assert report.skipped == [] and report.warnings == [
        f"{SAMPLE}: 6 rows read; left out: 2 of another language than 'en', 2 with an empty second_turn_prompt; 0 "
        "repeats of an earlier row's prompt folded into it; 2 prompts kept"]


def test_jsonl_and_parquet_rows_load_like_csv(tmp_path):
    rows = sample_rows()
    jsonl = tmp_path / "ca.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    parquet = tmp_path / "ca.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    expected = [(p.prompt_id, p.meta) for p in load(SAMPLE)]
    assert [(p.prompt_id, p.meta) for p in load(jsonl)] == expected
    assert [(p.prompt_id, p.meta) for p in load(parquet)] == expected


@pytest.mark.parametrize(
    "lines,line,field,message",
    [
        (["c2,en,True"], 3, None, "expected 4 cells"),
        (['c2,en,True,"Why?"x'], 3, None, "malformed CSV row"),
        ([b'c2,en,True,"Two', b'lines \xe9"'], 3, "first_turn_prompt", r"invalid UTF-8 \(line 4"),
    ],
)
def test_bad_rows_name_file_line_and_field(write, lines, line, field, message):
    path = write("ca.csv", [HEADER, "c1,en,True,Fine?", *lines])
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)


def test_jsonl_row_without_language_is_an_error_when_filtering(write):
    path = write("ca.jsonl", ['{"first_turn_prompt": "Why?", "assigned_lang": "en"}', '{"first_turn_prompt": "How?"}'])
    with pytest.raises(InputError, match="needed to filter by language") as info:
        load(path)
    assert (info.value.line, info.value.field) == (2, "assigned_lang")
    assert [p.text for p in load(path, lang=None)] == ["Why?", "How?"]


def test_missing_columns_fail_the_file(write):
    with pytest.raises(InputError, match="missing column") as info:
        load(write("ca.csv", ["conversation_id,assigned_lang,prompt", "c1,en,Why?"]))
    assert info.value.field == "first_turn_prompt"
    with pytest.raises(InputError, match="missing column") as info:
        load(write("ca.csv", ["conversation_id,first_turn_prompt", "c1,Why?"]))
    assert info.value.field == "assigned_lang"


def test_skip_mode_counts_bad_rows_and_keeps_the_rest(write):
    path = write("ca.csv", [HEADER, "c1,en,True,Why?", "c2,en,True", "c3,en,True,How?", "c4,en,True,Why?"])
    report = LoadReport()
    prompts = load(path, on_error="skip", report=report)
    assert [(p.text, p.meta["rows"]) for p in prompts] == [("Why?", 2), ("How?", 1)]
    assert [(e.line, e.field) for e in report.skipped] == [(3, None)]
    assert report.warnings == [f"{path}: 4 rows read; left out: 0 of another language than 'en', 0 with an empty "
                               "first_turn_prompt, 1 bad rows (listed apart); 1 repeats of an earlier row's prompt "
                               "folded into it; 2 prompts kept"]


# Rows left out or folded were not counted anywhere: a file of 90,000 rows gave 2,500 prompts, unsaid why.
def test_an_empty_first_turn_is_a_row_left_out_and_counted_not_an_error(write, tmp_path):
    path = write("ca.csv", [HEADER, "c1,en,True,Why?", "c2,en,True,EMPTY STRING", "c3,en,True,", 'c4,en,True,"  "',
                            "c5,fr,True,Pourquoi ?", "c6,en,True,Why?", "c7,en,True,How?"])
    report = LoadReport()
    prompts = load(path, report=report)  # on_error: fail — an empty first turn no longer stops the load
    assert [(p.text, p.meta["rows"], p.meta["conversation_ids"]) for p in prompts] == [
        ("Why?", 2, ["c1", "c6"]), ("How?", 1, ["c7"])]
    assert report.skipped == [] and report.warnings == [
        f"{path}: 7 rows read; left out: 1 of another language than 'en', 3 with an empty first_turn_prompt; 1 "
        "repeats of an earlier row's prompt folded into it; 2 prompts kept"]
    # Parquet's empty cell is a null; a JSONL row without the column at all is still a malformed row.
    rows = [{"conversation_id": "c1", "assigned_lang": "en", "first_turn_prompt": None},
            {"conversation_id": "c2", "assigned_lang": "en", "first_turn_prompt": "Why?"}]
    parquet = tmp_path / "ca.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    report = LoadReport()
    assert [p.text for p in load(parquet, report=report)] == ["Why?"]
    assert "1 with an empty first_turn_prompt" in report.warnings[0]
    jsonl = write("ca.jsonl", ['{"assigned_lang": "en"}'])
    with pytest.raises(InputError, match="missing required field") as info:
        load(jsonl)
    assert (info.value.line, info.value.field) == (1, "first_turn_prompt")


def test_nothing_left_out_or_folded_says_nothing(write):
    report = LoadReport()
    load(write("ca.csv", [HEADER, "c1,en,True,Why?", "c2,en,True,How?"]), report=report)
    assert report.warnings == []
