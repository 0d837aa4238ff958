"""The metrics stage on the packaged embedder: every registered metric per group, over the responses that answer."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine.method.metrics import GENERAL_METRICS
from engine.stages.metrics import MetricsStage

EMBEDDER = {"backend": "local", "model": "all-minilm-l6-v2"}
ANSWERS = ["The capital of France is Paris.", "Paris.", "It is Paris, on the Seine.", "Lyon, I think."]


def rows(*groups):
    return pa.Table.from_pylist([{"prompt_id": f"p{k}", "model": "m", "strategy": "temperature", "responses": g}
                                 for k, g in enumerate(groups)])


def test_empty_responses_are_no_text_to_compare():
    # Counted in, two empty responses were identical and an empty one wholly unlike any text: a group whose
    # generations were all cut off read as perfectly homogeneous (vocab_div 0), and one cut-off response moved a
    # group's every metric. The metrics are over the answers; fewer than two answers, no metric.
    stage = MetricsStage(EMBEDDER)
    out = stage(rows([""] * 5, ANSWERS[:2] + ["", "  \n"] + ANSWERS[2:], ANSWERS, ["", ANSWERS[0]])).to_pylist()
    all_empty, with_empty, answered, one_answer = out
    for column in GENERAL_METRICS:
        assert all_empty[column] is None and one_answer[column] is None, column
        assert with_empty[column] == pytest.approx(answered[column], abs=1e-9), column
        assert answered[column] is not None
    # The pairwise matrices keep every response at its position (the calibrated judge reads its pairs there).
    assert len(with_empty["pair_jaccard"]) == 6 * 6 and len(all_empty["pair_cosine"]) == 5 * 5
