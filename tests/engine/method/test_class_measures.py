"""Measures from the equivalence classes against hand-computed values, and their absence where classes are unknown."""

import math

import numpy as np
import pyarrow as pa
import pytest

from engine.execution import tables as T
from engine.method.class_measures import (
    grade_quality,
    normalised_entropy,
    semantic_entropy,
    utility,
    vendi_score,
)
from engine.method.components import count_components


def test_semantic_entropy_by_hand():
    # classes of sizes 2, 2, 1 among 5: -(0.4 ln 0.4 * 2 + 0.2 ln 0.2)
    assert semantic_entropy([0, 0, 1, 1, 2]) == pytest.approx(1.0549201679861442)
    assert normalised_entropy([0, 0, 1, 1, 2]) == pytest.approx(1.0549201679861442 / math.log(5))
    assert semantic_entropy([0, 0, 0]) == 0.0 and normalised_entropy([0, 0, 0]) == 0.0
    assert normalised_entropy([0, 1, 2, 3]) == pytest.approx(1.0)
    assert normalised_entropy([0]) is None


def test_utility_by_hand():
    # New classes open at responses 0, 2 and 3: (1*1 + 0.8^2*0.5 + 0.8^3*1) / (1 + 0.8 + 0.8^2 + 0.8^3 + 0.8^4)
    assert utility([0, 0, 1, 2, 1], [1.0, 0.5, 0.5, 1.0, 0.0]) == pytest.approx(1.832 / 3.3616)
    assert utility([0, 0, 0], [0.5, 1.0, 1.0]) == pytest.approx(0.5 / 2.44)
    assert utility([0, 1], [1.0, None]) is None  # an ungraded response: unknown, never 0
    assert grade_quality(5) == 1.0 and grade_quality(1) == 0.0 and grade_quality(None) is None


def test_vendi_by_hand():
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)
    assert vendi_score(np.ones((3, 3))) == pytest.approx(1.0)
    # eigenvalues of K / 2 are 0.75 and 0.25
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert vendi_score(np.array([[1.0, 0.5], [0.5, 1.0]])) == pytest.approx(expected)
    assert T.vendi_of([1.0, 0.5, 0.5, 1.0]) == pytest.approx(expected)
    assert T.vendi_of(None) is None
    # Over the responses that answer: an empty one leaves its row and column; fewer than two answers, no score.
    three = [1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert T.vendi_of(three, ["a", "b", ""]) == pytest.approx(expected)
    assert T.vendi_of(three, ["a", "", " "]) is None


def test_stored_grades_and_rewards_of_a_response_that_gives_no_answer_are_none():
    # Shards written before the grade and reward stages left such responses out keep their grades: the tables
    # drop them, so an old shard and a new one read the same.
    import pyarrow as pa

    key = {"prompt_id": "p", "model": "m", "strategy": "s"}
    answered = {("p", "m", "s"): [True, False]}
    grades = pa.Table.from_pylist([{**key, "grader": "g", "grades": [4, 4], "expected_grades": [4.0, 4.0],
                                    "raws": ["4", "4"]}])
    assert [(q["grade"], q["raw"]) for q in T.explode_grades(grades, answered).to_pylist()] == [
        (4, "4"), (None, "<no answer>")]
    rewards = pa.Table.from_pylist([{**key, "rewards": [0.5, 0.25]}])
    assert [r["reward"] for r in T.explode_rewards(rewards, answered).to_pylist()] == [0.5, None]
    assert [r["reward"] for r in T.explode_rewards(rewards).to_pylist()] == [0.5, 0.25]


def _pair(i, j, verdict, p):
    return {"i": i, "j": j, "verdict": verdict, "p_equivalent": p}


def _group(prompt, pairs, n=4):
    return {"prompt_id": prompt, "model": "m", "strategy": "s", "judge": "j", "judge_category": "G",
            "n_responses": n, "pairs": pairs, "calls_made": len(pairs), "calls_saved": 0, "order_disagreements": 0,
            "cheap_decided": 0}


def test_classes_only_where_the_count_is_resolved():
    resolved = _group("a", [_pair(0, 1, "equivalent", 0.9), _pair(0, 2, "different", 0.1),
                            _pair(0, 3, "different", 0.2), _pair(2, 3, "different", 0.1)])
    # 2 and 3 may or may not be one class: the count is open, so are the classes and all they measure.
    open_ = _group("b", [_pair(0, 1, "equivalent", 0.9), _pair(0, 2, "different", 0.1),
                         _pair(0, 3, "different", 0.2), _pair(2, 3, "unparsed", None)])
    a, b = count_components([resolved, open_], 0.5)
    assert a["classes"] == [0, 0, 1, 2] and a["unique"] == 3
    assert a["semantic_entropy"] == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert b["classes"] is None and b["semantic_entropy"] is None and b["semantic_entropy_norm"] is None

    comps = pa.Table.from_pylist([a, b], schema=T.COMPONENTS)
    quality = pa.Table.from_pylist(
        [{"prompt_id": p, "model": "m", "strategy": "s", "sample_idx": k, "grader": g, "grade": grade,
          "expected_grade": None, "raw": ""}
         for p in ("a", "b") for k in range(4) for g, grade in (("g1", 5), ("g2", 3 if k == 3 else 5))],
        schema=T.QUALITY)
    out = T.with_utility(comps, quality).to_pylist()
    # response 3's quality is the graders' mean grade 4 -> 0.75; new classes at 0, 2, 3
    expected = (1.0 + 0.64 * 1.0 + 0.512 * 0.75) / (1 + 0.8 + 0.64 + 0.512)
    assert out[0]["utility"] == pytest.approx(expected)
    assert out[1]["utility"] is None
