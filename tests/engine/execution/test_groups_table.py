"""The groups table: what a group's mean over the judges, its bounds and its general metrics may say when some of
what stands behind them is unknown."""

import pyarrow as pa
import pytest

from engine.execution.tables import groups_table
from engine.method.metrics import GENERAL_METRICS

KEY = {"prompt_id": "p", "model": "m", "strategy": "temperature"}


def frame(responses):
    return pa.Table.from_pylist([{**KEY, "judge_category": "G", "category_source": "gold", "gold_category": "G",
                                  "classified": "G", "responses": responses, "status": "ok"}])


def component(judge, unique, low=None, high=None):
    return {**KEY, "judge": judge, "unique": unique, "resolved": unique is not None,
            "unique_low": unique if low is None else low, "unique_high": unique if high is None else high,
            "semantic_entropy": 0.5 if unique is not None else None, "semantic_entropy_norm": None,
            "utility": None}


def metrics(value=2.0):
    return pa.Table.from_pylist([{**KEY, **{column: value for column in GENERAL_METRICS}}])


def table(rows, responses=("a", "b", "c"), trace_judges=None, trace_rows=()):
    (g,) = groups_table(frame(list(responses)), pa.Table.from_pylist(rows), metrics(), None, judges=["a", "b"],
                        trace_components=pa.Table.from_pylist(list(trace_rows)) if trace_rows else None,
                        trace_judges=trace_judges).to_pylist()
    return g


def test_the_mean_is_over_every_judge_and_stays_within_its_bounds():
    # Judge a says 2, judge b left the count between 3 and 3: the mean over a alone (2) lay below the group's own
    # bounds (2.5 – 2.5), and a cell mixing such groups with whole-panel ones left its bounds too.
    g = table([component("a", 2), component("b", None, low=3, high=3)])
    assert g["unique_mean"] is None and g["judges_in_mean"] == [] and g["unresolved_judges"] == ["b"]
    assert (g["unique_low_mean"], g["unique_high_mean"]) == (2.5, 2.5)
    assert dict(g["unique_per_judge"]) == {"a": 2}  # what each resolved judge said is kept
    assert g["semantic_entropy_mean"] is None  # class measures are over the same judges as the mean
    whole = table([component("a", 2), component("b", 3)])
    assert whole["unique_mean"] == 2.5 and whole["judges_in_mean"] == ["a", "b"]
    assert whole["semantic_entropy_mean"] == 0.5


def test_a_judge_with_no_count_bounds_the_mean_from_one_to_n():
    # Its shard failed: the bounds were the present judge's alone (2 – 2), though the missing count may be 1 or 3.
    g = table([component("a", 2)])
    assert g["unique_mean"] is None and g["missing_judges"] == ["b"]
    assert (g["unique_low_mean"], g["unique_high_mean"]) == (1.5, 2.5)


def test_a_group_with_an_unanswered_response_has_no_compression_ratio():
    # The compression ratio grows with the texts compressed together: over the answering responses only, a group with
    # empty ones read as less repetitive than the whole groups beside it. The mean-over-pairs metrics stay.
    g = table([component("a", None, 2, 3), component("b", None, 2, 3)], responses=("a", "", "b"))
    assert g["n_no_answer"] == 1 and g["compression_ratio"] is None
    assert all(g[c] == 2.0 for c, m in GENERAL_METRICS.items() if m.per_pair)
    assert table([component("a", 2), component("b", 2)])["compression_ratio"] == 2.0


def test_answers_are_also_counted_over_the_trace_judges():
    # The calibrated judge judges answers, never traces: the trace section's difference (traces − answers) set the
    # trace judges' panel against every judge's.
    trace = {**component("a", 2), "judge": "a"}
    g = table([component("a", 2), component("b", 3)], trace_judges=["a"], trace_rows=[trace])
    assert g["unique_mean"] == 2.5 and g["unique_mean_trace_judges"] == 2.0
    assert g["unique_trace_mean"] == 2.0 and g["trace_judges_in_mean"] == ["a"]


def test_the_report_names_an_unanswered_response_as_the_reason_a_group_is_left_out():
    from engine.report.data import _exclusion_reason

    g = table([component("a", None, 2, 3), component("b", None, 2, 3)], responses=("a", "", "b"))
    assert _exclusion_reason(g, 3) == "unresolved: a response gives no answer (empty, cut off while thinking)"
    g = table([component("a", 2), component("b", None, 2, 3)])
    assert _exclusion_reason(g, 3) == "unresolved: a judge's count could not be read (unreadable verdicts)"


@pytest.mark.parametrize("judges", [["a"], ["a", "b"]])
def test_a_group_without_responses_has_no_mean_nor_bounds(judges):
    (g,) = groups_table(frame([]), pa.Table.from_pylist([component("a", None, 1, 1)]), metrics(), None,
                        judges=judges).to_pylist()
    assert g["unique_mean"] is None and g["unique_low_mean"] is None and g["judges_in_mean"] == []
