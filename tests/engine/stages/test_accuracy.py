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
