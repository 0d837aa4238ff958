import json

import pytest

from engine.errors import InputError
from engine.inputs.prompts import LoadReport
from engine.inputs.responses import example_rows, load_responses

from .loaders.conftest import REPO


def write(tmp_path, rows, name="responses.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_the_example_file_matches_and_loads():
    path = REPO / "datasets" / "examples" / "responses.jsonl"
    assert [json.loads(l) for l in path.read_text().splitlines() if l.strip()] == example_rows()
    prompts, groups = load_responses(path)
    assert len(prompts) == 2 and sorted(len(g.responses) for g in groups) == [2, 2]
    math = next(p for p in prompts if p.gold_category == "D")
    assert math.gold_answer == "391"


def test_rows_group_by_prompt_model_strategy_and_order_by_sample_idx(tmp_path):
    rows = [{"prompt": "p", "response": "second", "sample_idx": 1},
            {"prompt": "p", "response": "first", "sample_idx": 0},
            {"prompt": "p", "response": "other model", "model": "m2"}]
    prompts, groups = load_responses(write(tmp_path, rows))
    assert len(prompts) == 1
    by_model = {g.model: g for g in groups}
    assert [t for _, t in by_model["external"].responses] == ["first", "second"]
    assert by_model["m2"].strategy == "external"


@pytest.mark.parametrize("row,field", [
    ({"response": "x"}, "prompt"),
    ({"prompt": "p"}, "response"),
    ({"prompt": "p", "responses": "not a list"}, "responses"),
    ({"prompt": "p", "response": 5}, "response"),
    ({"prompt": "p", "response": "x", "category": "Q"}, "category"),
    ({"prompt": "p", "response": "x", "sample_idx": -1}, "sample_idx"),
    ({"prompt": "p", "response": "x", "sample_idx": "²"}, "sample_idx"),  # a digit to str.isdigit; int() refused it
    ({"prompt": "", "response": "x"}, "prompt"),
    ({"prompt": "p", "response": "x", "trace": ["t"]}, "trace"),
    ({"prompt": "p", "responses": ["x", "y"], "traces": ["t"]}, "traces"),
    ({"prompt": "p", "responses": ["x", "y"], "traces": ["t", 3]}, "traces"),
    ({"prompt": "p", "responses": []}, "responses"),  # a group of none: its prompt was classified, nothing judged
])
def test_bad_rows_name_line_and_field(tmp_path, row, field):
    path = write(tmp_path, [{"prompt": "ok", "response": "fine"}, row])
    with pytest.raises(InputError) as info:
        load_responses(path)
    assert (info.value.line, info.value.field) == (2, field)


def test_traces_given_beside_responses_are_kept_by_sample_idx(tmp_path):
    rows = [{"prompt": "p", "response": "b", "sample_idx": 1, "trace": "thought b"},
            {"prompt": "p", "response": "a", "sample_idx": 0},
            {"prompt": "q", "responses": ["x", "y", "z"], "traces": [None, "thought y", None]}]
    _, groups = load_responses(write(tmp_path, rows))
    # A null or absent trace is not recorded: the run splits inline reasoning off those responses itself.
    assert [(g.responses, g.traces) for g in groups] == [([(0, "a"), (1, "b")], {1: "thought b"}),
                                                         ([(0, "x"), (1, "y"), (2, "z")], {1: "thought y"})]


def test_an_empty_trace_cell_is_no_trace(tmp_path):
    path = tmp_path / "responses.csv"
    path.write_text('prompt,response,trace\nSay hi,"<think>hmm</think>Hello",\nSay hi,Hi there,thought\n')
    _, (group,) = load_responses(path)
    assert group.traces == {1: "thought"}  # the empty cell leaves the first response's inline thinking to split
    # Only whitespace is no trace either (as a message's reasoning_content is): the inline block was kept in the
    # answer, judged, and the group's reward unknown.
    rows = [{"prompt": "p", "responses": ["<think>hmm</think>red", "blue"], "traces": ["\n", "thought"]},
            {"prompt": "q", "response": "<think>hm</think>green", "trace": " "}]
    _, groups = load_responses(write(tmp_path, rows))
    assert [g.traces for g in groups] == [{1: "thought"}, {}]


def test_duplicate_sample_idx_and_conflicting_category(tmp_path):
    with pytest.raises(InputError, match="duplicate sample_idx 0"):
        load_responses(write(tmp_path, [{"prompt": "p", "response": "a", "sample_idx": 0},
                                        {"prompt": "p", "response": "b", "sample_idx": 0}]))
    with pytest.raises(InputError, match=r"disagrees with an earlier row of the same prompt \(line 1\)") as info:
        load_responses(write(tmp_path, [{"prompt": "p", "response": "a", "category": "A"},
                                        {"prompt": "p", "response": "b", "category": "B"}]))
    assert (info.value.line, info.value.field) == (2, "category")
    # A gold answer that differs was named as the category, with no line to look at.
    with pytest.raises(InputError, match=r"\(line 2\)") as info:
        load_responses(write(tmp_path, [{"prompt": "q", "response": "z"},
                                        {"prompt": "p", "response": "a", "gold_answer": "1"},
                                        {"prompt": "p", "response": "b", "gold_answer": "2"}]))
    assert (info.value.line, info.value.field) == (3, "gold_answer")


def test_skip_mode_keeps_the_rest(tmp_path):
    report = LoadReport()
    prompts, groups = load_responses(write(tmp_path, ["{bad", {"prompt": "p", "response": "a"}]),
                                     on_error="skip", report=report)
    assert len(prompts) == 1 and len(report.skipped) == 1


def test_blank_name_cells_take_the_default_and_prompt_text_is_stripped(tmp_path):
    # A CSV's empty `model` cell made a group named "" and a prompt with a trailing space or newline was a prompt
    # of its own: either split a group silently (fewer than n responses, out of the means).
    path = tmp_path / "responses.csv"
    path.write_bytes("\ufeffprompt,model,strategy,response\r\n"
                     "Name a fruit.,m1,,apple\r\n"
                     "\"Name a fruit. \",m1,  ,pear\r\n"
                     "\"Name a fruit.\n\",,,plum\r\n".encode())
    prompts, groups = load_responses(path)
    assert [p.text for p in prompts] == ["Name a fruit."]
    assert {(g.model, g.strategy): [t for _, t in g.responses] for g in groups} == {
        ("m1", "external"): ["apple", "pear"], ("external", "external"): ["plum"]}


def test_a_row_refused_for_a_taken_index_is_skipped_whole_and_says_why(tmp_path):
    # Row 2's `responses` list numbers its responses 0, 1, 2; row 1 already holds 1. Its 0 ("a", with its trace) was
    # once added before the clash was found, so the skipped row was counted yet half kept.
    path = write(tmp_path, [{"prompt": "P", "response": "r1", "sample_idx": 1},
                            {"prompt": "P", "responses": ["a", "b", "c"], "traces": ["t", None, None]}])
    report = LoadReport()
    _, groups = load_responses(path, on_error="skip", report=report)
    assert [g.responses for g in groups] == [[(1, "r1")]] and groups[0].traces == {}
    [error] = report.skipped
    # The row gave no sample_idx: the error names the field it gave.
    assert (error.line, error.field) == (2, "responses") and "`responses` list" in error.reason
    with pytest.raises(InputError, match="already holds response 1") as info:
        load_responses(path)
    assert (info.value.line, info.value.field) == (2, "responses")


def test_a_row_without_sample_idx_clashing_by_file_order_names_its_response(tmp_path):
    # Row 2 has no sample_idx, so it is response 1 by file order, which row 1's sample_idx took.
    path = write(tmp_path, [{"prompt": "P", "response": "r1", "sample_idx": 1}, {"prompt": "P", "response": "r2"}])
    with pytest.raises(InputError, match="no sample_idx, so this is response 1") as info:
        load_responses(path)
    assert (info.value.line, info.value.field) == (2, "response")
