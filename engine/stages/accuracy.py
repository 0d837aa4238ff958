"""Accuracy: is each response correct, for prompts with a verifiable gold answer (engine.method.accuracy).

Math answers are checked by math-verify in a guarded worker (engine.method.math), short answers by the LLM grader
beside a normalised exact-containment cross-check; "could not check" stays null, never "incorrect". A response that
gives no answer (empty, cut off while thinking: has_answer) is neither checked nor sent to the grader: as the
benchmarks count it, it is not correct and not answered (MATH-500's "no final answer", SimpleQA's "not attempted").
"""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import SamplingParams
from engine.method.accuracy import accuracy_method, grader_program
from engine.method.judges import has_answer
from engine.method.math import check_math_answer, check_may_pass_again, short_answer_exact
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, BackendStage

NO_ANSWER = "<no answer>"  # the raw of a response that gives none: not checked, not graded


class AccuracyStage(BackendStage):
    """Correctness of each response of the groups whose prompt has a gold answer.

    Args:
        model: the grader's spec (used for short answers only).
        math_timeout_s: wall-clock limit of one math-verify check.
    """

    name = "accuracy"
    required_inputs = {
        **GROUP_INPUTS,
        "text": "the user prompt",
        "source": "the prompt's source (simpleqa, math500, …)",
        "judge_category": "the prompt's category",
        "gold_answer": "the reference answer (null: nothing to check)",
        "responses": "the group's responses",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            ("method", pa.string()),
            ("correct", pa.list_(pa.bool_())),
            ("grades", pa.list_(pa.string())),
            ("extracted", pa.list_(pa.string())),
            ("exact", pa.list_(pa.bool_())),
            ("answered", pa.list_(pa.bool_())),
            ("raws", pa.list_(pa.string())),
        ]
    )

    def __init__(self, model: dict[str, Any], math_timeout_s: float = 10.0) -> None:
        super().__init__(model)
        self.math_timeout_s = math_timeout_s
        self.sampling = SamplingParams(temperature=0.0, max_tokens=4)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        methods = [accuracy_method(r["source"], r["judge_category"], r["gold_answer"]) for r in rows]
        programs, owners = [], []
        for k, (r, method) in enumerate(zip(rows, methods)):
            if method == "grader":
                for i, response in enumerate(r["responses"]):
                    if has_answer(response):  # an empty response was sent to the grader, paid and graded
                        programs.append(grader_program(r["text"], r["gold_answer"], response, self.sampling))
                        owners.append((k, i))
        graded = dict(zip(owners, self.drive(programs, [k for k, _ in owners])))
        for k, (r, method) in enumerate(zip(rows, methods)):
            out = {IDX: k, "prompt_id": r["prompt_id"], "model": r["model"], "strategy": r["strategy"],
                   "method": method, "correct": [], "grades": [], "extracted": [], "exact": [], "answered": [],
                   "raws": []}
            for i, response in enumerate(r["responses"] if method is not None else []):
                if not has_answer(response):
                    columns = no_answer_check()
                elif method == "grader":
                    asked = graded[(k, i)]
                    # SimpleQA's "not attempted" is its own rate (and counts as not correct); an unread grade: unknown.
                    columns = {"correct": None if asked.value is None else asked.value == "correct",
                               "grades": asked.value, "extracted": None,
                               "exact": short_answer_exact(response, r["gold_answer"]),
                               "answered": None if asked.value is None else asked.value != "not_attempted",
                               "raws": asked.raw}
                else:
                    check = check_math_answer(response, r["gold_answer"], timeout_s=self.math_timeout_s)
                    if check_may_pass_again(check):
                        # Out of time under load (streaming checks while sampling takes the CPU): a rerun checks the
                        # row again (free, up to execution.row_retries times), as it asks a failed request again.
                        self._transient.setdefault(k, f"math check: {check.reason}")
                    columns = {"correct": check.correct, "grades": None, "extracted": check.extracted, "exact": None,
                               "answered": check.answered, "raws": check.reason}
                for column, value in columns.items():
                    out[column].append(value)
            yield out


def no_answer_check() -> dict[str, Any]:
    """The accuracy columns of a response that gives no answer: not correct and not answered, as the benchmarks
    count it; nothing extracted, graded or matched."""
    return {"correct": False, "grades": None, "extracted": None, "exact": None, "answered": False, "raws": NO_ANSWER}
