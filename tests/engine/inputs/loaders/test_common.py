import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InputError
from engine.inputs.loaders.common import PromptSink, br_to_newline, read_csv, read_parquet, read_table
from engine.inputs.prompts import LoadReport, make_prompt


def rows(iterator):
    return [(line, row if isinstance(row, dict) else ("error", row.line, row.field, row.reason))
            for line, row in iterator]


# CSV line numbers: a quoted cell may span lines; errors must point at the line where the record starts.
def test_csv_rows_carry_the_physical_line_where_each_record_starts(write):
    path = write("t.csv", ["a,b", '1,"two', 'lines"', "", "3,x"])
    assert rows(read_csv(path, required=["a"])) == [(2, {"a": "1", "b": "two\nlines"}), (5, {"a": "3", "b": "x"})]


def test_csv_crlf_line_endings_and_bom(write):
    path = write("t.csv", [b"\xef\xbb\xbfa,b", b'1,"x\r\ny"', b"2,z"], end=b"\r\n")
    assert rows(read_csv(path, required=["a", "b"])) == [(2, {"a": "1", "b": "x\r\ny"}), (4, {"a": "2", "b": "z"})]


def test_csv_invalid_utf8_names_record_start_column_and_the_bad_line(write):
    path = write("t.csv", [b"a,b", b'1,"ok', b'caf\xe9"', b"2,fine"])
    (line, error), (line2, good) = read_csv(path, required=["a"])
    assert (line, error.line, error.field) == (2, 2, "b")
    assert "invalid UTF-8 (line 3, byte 3)" in error.reason
    assert (line2, good) == (4, {"a": "2", "b": "fine"})


def test_csv_malformed_quoting_is_a_row_error_and_reading_goes_on(write):
    path = write("t.csv", ["a,b", '1,"x"y', "2,z"])
    assert rows(read_csv(path, required=["a"])) == [
        (2, ("error", 2, None, "malformed CSV row: ',' expected after '\"'")),
        (3, {"a": "2", "b": "z"}),
    ]


def test_csv_unterminated_quote_reports_where_it_opened(write):
    path = write("t.csv", ["a,b", "1,x", '2,"never closed', "3,y"])
    result = rows(read_csv(path, required=["a"]))
    assert result[0] == (2, {"a": "1", "b": "x"})
    assert result[1][0] == 3 and result[1][1][:2] == ("error", 3) and "unexpected end of data" in result[1][1][3]


def test_a_quote_left_open_mid_file_names_the_lines_it_swallowed(write):
    # Line 3's quote closes on line 5: lines 3-5 are one record of too many cells. Line 4's row had no error of its
    # own; the error now names the lines read as one row.
    path = write("t.csv", ["a,b", "1,x", '2,"open', "3,y", '4,z",more', "5,w"])
    result = rows(read_csv(path, required=["a"]))
    assert [r[0] for r in result] == [2, 3, 6]
    assert result[1][1] == ("error", 3, None, "expected 2 cells (a, b), got 3 in lines 3–5 read as one row (a quote "
                                              "left open joins the lines after it)")


def test_csv_wrong_number_of_cells(write):
    path = write("t.csv", ["a,b", "1,2,3"])
    assert rows(read_csv(path, required=["a"])) == [(2, ("error", 2, None, "expected 2 cells (a, b), got 3"))]


@pytest.mark.parametrize(
    "lines,line,field,message",
    [
        (["a,c", "1,2"], 1, "b", "missing column"),
        ([b"a,\xffb", b"1,2"], 1, None, "invalid UTF-8 in the header"),
        # Read into a dict, a repeated column kept its last cell and dropped the others unsaid.
        (["a,b,b", "1,2,3"], 1, "b", "the header names b more than once"),
    ],
)
def test_csv_header_problems_fail_the_file(write, lines, line, field, message):
    path = write("t.csv", lines)
    with pytest.raises(InputError, match=message) as info:
        list(read_csv(path, required=["a", "b"]))
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)


def test_csv_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        list(read_csv(tmp_path / "empty.csv", required=[]))
    with pytest.raises(InputError, match="file not found"):
        list(read_csv(tmp_path / "none.csv", required=[]))


# Other formats.
def test_parquet_rows_are_numbered_from_one_and_columns_checked(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": ["x", "y"], "b": [[1], [2, 3]]}), path)
    assert list(read_parquet(path, required=["a"])) == [(1, {"a": "x", "b": [1]}), (2, {"a": "y", "b": [2, 3]})]
    with pytest.raises(InputError, match="missing column") as info:
        list(read_parquet(path, required=["c"]))
    assert info.value.field == "c"


def test_parquet_that_is_not_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(read_parquet(path, required=[]))


def test_read_table_dispatches_on_suffix_and_rejects_others(write):
    path = write("t.jsonl", ['{"a": 1}', "[1]"])
    result = list(read_table(path, required=["a"], formats=("jsonl",)))
    assert result[0] == (1, {"a": 1}) and "expected a JSON object" in result[1][1].reason
    with pytest.raises(InputError, match=r"unsupported file type '\.jsonl'; expected one of \.csv"):
        read_table(path, required=[], formats=("csv",))


def test_br_tags_become_newlines():
    assert br_to_newline("Step1: a <br>\nStep2: b<br/>Step3<BR />c") == "Step1: a\nStep2: b\nStep3\nc"


# The sink: one error policy for every loader.
def _build(row, line):
    return make_prompt(row["t"], source="s", path="f", line=line, field_names={"text": "t"})


def test_sink_fails_on_the_first_error_or_skips_and_records():
    data = [(1, {"t": "a"}), (2, InputError("f", 2, None, "bad")), (3, {"t": ""}), (4, {"t": "b"})]
    with pytest.raises(InputError, match="bad"):
        PromptSink("f", on_error="fail", report=None, text_field="t").add_rows(data, _build)
    report = LoadReport()
    sink = PromptSink("f", on_error="skip", report=report, text_field="t")
    sink.add_rows(data, _build)
    assert [p.text for p in sink.prompts] == ["a", "b"]
    assert [(e.line, e.field) for e in report.skipped] == [(2, None), (3, "t")]


def test_sink_duplicates_are_errors_naming_both_lines_unless_merged():
    data = [(1, {"t": "a"}), (5, {"t": "a"})]
    with pytest.raises(InputError, match=r"duplicate prompt \(same source and text as line 1\)") as info:
        PromptSink("f", on_error="fail", report=None, text_field="t").add_rows(data, _build)
    assert (info.value.line, info.value.field) == (5, "t")
    merged = []
    sink = PromptSink("f", on_error="fail", report=None, text_field="t", merge_duplicates=True,
                      on_duplicate=lambda first, l1, repeat, l2: merged.append((l1, l2)) or first)
    sink.add_rows(data, _build)
    assert len(sink.prompts) == 1 and merged == [(1, 5)]


def test_sink_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="on_error must be one of fail, skip"):
        PromptSink("f", on_error="ignore", report=None, text_field="t")


def test_a_quote_left_open_to_the_end_of_the_file_names_the_lines_it_swallowed(write):
    # csv gives up at the end of the file: rows 4-6 went into line 3's error, one skip that must say so.
    path = write("t.csv", ["a,b", "1,x", '2,"never closed', "3,y", "4,z", "5,w"])
    result = rows(read_csv(path, required=["a"]))
    assert [r[0] for r in result] == [2, 3]
    assert result[1][1] == ("error", 3, None, "malformed CSV row: unexpected end of data (lines 3–6 read as one row: "
                                              "a quote left open joins the lines after it)")
