import pyarrow as pa
import pytest

from engine.stages.accuracy import AccuracyStage, accuracy_method

SCRIPTED = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted"}


@pytest.mark.parametrize("source,category,gold,method", [
    ("math500", None, "1/2", "math-verify"),
    ("builtin", "D", "391", "math-verify"),
    ("simpleqa", None, "Paris", "grader"),
    ("builtin", "A", "Au", "grader"),
    ("builtin", "G", None, None),
    ("builtin", "A", None, None),
    ("noveltybench", "B", "x", None),
])
def test_method_by_source_and_category(source, category, gold, method):
    assert accuracy_method(source, category, gold) == method


def rows(**over):
    base = {"prompt_id": "p", "model": "m", "strategy": "temperature", "text": "What is 17 times 23?",
            "source": "builtin", "judge_category": "D", "gold_answer": "391",
            "responses": [r"17 \times 23 = \boxed{391}", "The answer is 392.", "I cannot say."]}
    return pa.Table.from_pylist([{**base, **over}])


def test_math_answers_are_checked_with_math_verify():
    (out,) = AccuracyStage(SCRIPTED)(rows()).to_pylist()
    assert out["method"] == "math-verify"
    assert out["correct"][:2] == [True, False]
    assert out["extracted"][0] == "391"


def test_short_answers_go_to_the_grader_with_an_exact_match_beside(monkeypatch):
    from tests.support.doubles import ScriptedChat

    monkeypatch.setattr(ScriptedChat, "_answer", lambda self, conv, text, p: self._one(
        "A" if "Au" in text.split("Response:")[1] else "B", p))
    table = rows(judge_category="A", gold_answer="Au", text="Symbol of gold?", responses=["It is Au.", "Ag"])
    (out,) = AccuracyStage(SCRIPTED)(table).to_pylist()
    assert out["method"] == "grader" and out["grades"] == ["correct", "incorrect"]
    assert out["correct"] == [True, False] and out["exact"] == [True, False]


@pytest.mark.parametrize("category,gold", [("A", "Paris"), ("D", "391")])
def test_a_response_with_no_answer_is_not_correct_and_not_answered_and_never_graded(category, gold):
    # An empty response (a reasoning model cut off while thinking) was sent to the grader — paid — and its grade kept
    # as an answered one; as the benchmarks count it, it is not correct and not answered.
    from engine.execution.tables import explode_accuracy
    from tests.support.doubles import ScriptedChat

    ScriptedChat.calls.clear()
    answer = "Paris" if category == "A" else r"\boxed{391}"
    table = rows(judge_category=category, gold_answer=gold, responses=["", "  \n", answer])
    (out,) = AccuracyStage(SCRIPTED)(table).to_pylist()
    assert out["correct"][:2] == [False, False] and out["answered"][:2] == [False, False]
    assert out["grades"][:2] == [None, None] and out["raws"][:2] == ["<no answer>"] * 2
    assert len(ScriptedChat.calls) == (1 if category == "A" else 0)  # the answering response only
    # A shard stored before: the empty response graded and counted as answered; the table reads it as no answer.
    stored = pa.Table.from_pylist([{**out, "correct": [True, False, True], "grades": ["correct"] * 3,
                                    "answered": [True] * 3, "raws": ["A"] * 3}])
    exploded = explode_accuracy(stored, {("p", "m", "temperature"): [False, False, True]}).to_pylist()
    assert [(r["correct"], r["answered"], r["grade"]) for r in exploded] == [
        (False, False, None), (False, False, None), (True, True, "correct")]


def test_groups_without_a_method_check_nothing():
    (out,) = AccuracyStage(SCRIPTED)(rows(judge_category="G", gold_answer=None)).to_pylist()
    assert out["method"] is None and out["correct"] == []


def test_a_math_check_out_of_time_is_asked_again_by_a_rerun(monkeypatch):
    # A check that timed out (its timeouts are wall-clock, and a streaming run checks while sampling takes the CPU)
    # was stored unchecked for good: a rerun, even with a longer accuracy.math_timeout_s, reused it. Its row is
    # marked for a rerun now, as a request that failed transiently; a parse failure is not.
    from engine.method.math import MathCheck
    from engine.stages import accuracy
    from engine.stages.base import RETRY

    outcomes = iter([MathCheck(True, "391", "equal"), MathCheck(None, "392", "timed out after 1 s (worker killed)"),
                     MathCheck(None, None, "not checked: could not parse the answer")])
    monkeypatch.setattr(accuracy, "check_math_answer", lambda *args, **kwargs: next(outcomes))
    (out,) = AccuracyStage(SCRIPTED)(rows()).to_pylist()
    assert out["correct"] == [True, None, None] and "timed out" in out[RETRY]
    outcomes = iter([MathCheck(True, "391", "equal"), MathCheck(False, "392", "not equal"),
                     MathCheck(None, None, "not checked: could not parse the answer")])
    (out,) = AccuracyStage(SCRIPTED)(rows()).to_pylist()
    assert out[RETRY] is None
