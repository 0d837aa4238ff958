"""Schemas of the run's tables and the driver-side views built from stage outputs.

Stage outputs are group-level (one row per prompt × model × strategy, lists inside); the tables a user reads
(responses, judgments, quality) are long-form views exploded from them, and `groups` joins everything per group.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from engine.method.class_measures import grade_quality, utility, vendi_score
from engine.method.classification import PENDING
from engine.method.components import count_components
from engine.method.judges import has_answer
from engine.method.metrics import GENERAL_METRICS
from engine.stages.base import GROUP_KEY
from engine.stages.judge import PAIR_TYPE

PROMPTS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("gold_category", pa.string()),
        ("gold_answer", pa.string()),
        ("meta", pa.string()),
    ]
)

SAMPLE_INPUT = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("text", pa.string()),
        ("strategy", pa.string()),
        ("category", pa.string()),
        ("seed", pa.int64()),
    ]
)

# What the driver keeps beside each group (never sent to a model stage as such).
CLASSIFICATIONS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("model", pa.string()),  # who classified; "reference" for the majority row
        ("category", pa.string()),  # null when unparsed (or, for the reference, when no vote parsed)
        ("raw", pa.string()),
        ("calls", pa.int64()),
        # "own": a generator's self-classification (drives anchored sampling); "vote": a reference classifier's;
        # "reference": the majority of the votes (the yardstick where there is no gold label).
        ("role", pa.string()),
    ]
)

GROUP_CONTEXT = pa.schema(
    [
        ("_pshard", pa.int64()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("gold_category", pa.string()),
        ("gold_answer", pa.string()),
        ("classified", pa.string()),
        ("judge_category", pa.string()),
        ("category_source", pa.string()),
        ("_unit", pa.string()),
    ]
)

JUDGE_INPUT = pa.schema(
    [
        *GROUP_KEY,
        ("judge_category", pa.string()),
        ("text", pa.string()),
        ("responses", pa.list_(pa.string())),
        ("agreement_sample", pa.bool_()),  # judged in full by every judge (judge.agreement_sample_rate's draw)
    ]
)

METRICS_INPUT = pa.schema(
    [
        *GROUP_KEY,
        ("responses", pa.list_(pa.string())),
    ]
)

ACCURACY_INPUT = pa.schema(
    [
        *GROUP_KEY,
        ("text", pa.string()),
        ("source", pa.string()),
        ("judge_category", pa.string()),
        ("gold_answer", pa.string()),
        ("responses", pa.list_(pa.string())),
    ]
)

ACCURACY = pa.schema(
    [
        *GROUP_KEY,
        ("sample_idx", pa.int64()),
        ("method", pa.string()),
        ("correct", pa.bool_()),
        ("grade", pa.string()),
        ("extracted", pa.string()),
        ("exact_match", pa.bool_()),
        ("answered", pa.bool_()),  # False: no final answer (MATH) or not attempted (SimpleQA)
        ("raw", pa.string()),
    ]
)

CHECKLIST_INPUT = pa.schema([("prompt_id", pa.string()), ("text", pa.string()), ("judge_category", pa.string())])

REWARD_INPUT = pa.schema(
    [
        *GROUP_KEY,
        ("text", pa.string()),
        ("responses", pa.list_(pa.string())),
    ]
)

GRADE_INPUT = pa.schema(
    [
        *GROUP_KEY,
        ("text", pa.string()),
        ("responses", pa.list_(pa.string())),
        ("criteria", pa.list_(pa.string())),
    ]
)

SAMPLES = pa.schema(
    [
        *GROUP_KEY,
        ("classified", pa.string()),
        ("gold_category", pa.string()),
        ("anchored_as", pa.string()),
        ("parse_mode", pa.string()),  # system-prompt strategies: how the completion was split
        ("status", pa.string()),
        ("raw", pa.string()),
        ("calls", pa.int64()),
        ("error", pa.string()),
    ]
)

RESPONSES = pa.schema(
    [
        *GROUP_KEY,
        ("sample_idx", pa.int64()),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
        ("n_tokens", pa.int64()),
        ("trace", pa.string()),  # the reasoning before the response (null where none), never part of `text`
    ]
)

JUDGMENTS = pa.schema(
    [
        *GROUP_KEY,
        ("judge", pa.string()),
        *(PAIR_TYPE.field(k) for k in range(PAIR_TYPE.num_fields)),
    ]
)

QUALITY = pa.schema(
    [
        *GROUP_KEY,
        ("sample_idx", pa.int64()),
        ("grader", pa.string()),
        ("grade", pa.int64()),
        ("expected_grade", pa.float64()),
        ("raw", pa.string()),
    ]
)

GROUPS = pa.schema(
    [
        *GROUP_KEY,
        ("category", pa.string()),  # the category the group was judged under (its yardstick)
        # "gold", "reference" (the reference classification), null (uncategorised: the generic criterion), or
        # "pending" (a classifier's answer is missing: not judged, graded or checked until a rerun classifies it)
        ("category_source", pa.string()),
        ("gold_category", pa.string()),
        ("classified", pa.string()),  # the generator's own classification (drives anchored sampling)
        ("n_responses", pa.int64()),
        ("status", pa.string()),
        ("n_no_answer", pa.int64()),  # responses that give no answer: their pairs are not judged (no_answer)
        # Resolved counts only. The mean is over every judge of the run, and null unless each one's count is
        # resolved: a mean over whichever judges resolved compared one panel's groups with another's (judges differ
        # in strictness) and could fall outside the group's own bounds. judges_in_mean: every judge, or none.
        ("unique_per_judge", pa.map_(pa.string(), pa.int64())),
        ("unique_mean", pa.float64()),
        ("judges_in_mean", pa.list_(pa.string())),
        ("unresolved_judges", pa.list_(pa.string())),  # judged, but unreadable verdicts leave the count open
        ("missing_judges", pa.list_(pa.string())),  # no count at all: the judge's shard failed
        ("unique_low_mean", pa.float64()),  # bounds of the mean over every judge (a missing one's count: 1 to n)
        ("unique_high_mean", pa.float64()),
        *((column, pa.float64()) for column in GENERAL_METRICS),
        ("quality_mean", pa.float64()),
        ("n_graded", pa.int64()),
        ("accuracy", pa.float64()),
        ("n_checked", pa.int64()),
        ("reward_mean", pa.float64()),
        ("n_rewarded", pa.int64()),
        # From the equivalence classes of the judges in judges_in_mean (engine.method.class_measures), and the
        # Vendi score of the group's embeddings (general, for contrast).
        ("semantic_entropy_mean", pa.float64()),  # nats
        ("semantic_entropy_norm_mean", pa.float64()),  # / ln n
        ("utility_mean", pa.float64()),  # NoveltyBench utility; null where a response is ungraded
        ("vendi", pa.float64()),
        # Reasoning traces (judge.target trace / both): whether every response has a trace of its own ("traced"),
        # some do ("partial"), none ("none"), or one trace was split over all ("shared": system-prompt strategies);
        # the mean unique traces over every trace judge, null unless each one's count is resolved (as unique_mean),
        # and the answers' mean over the same judges (the trace section's paired difference compares one panel).
        ("trace_status", pa.string()),
        ("unique_trace_mean", pa.float64()),
        ("trace_judges_in_mean", pa.list_(pa.string())),
        ("unique_mean_trace_judges", pa.float64()),
        # As for answers, for traced groups: judged but unreadable, or no count at all (the judge's shard failed).
        ("trace_unresolved_judges", pa.list_(pa.string())),
        ("trace_missing_judges", pa.list_(pa.string())),
    ]
)

COMPONENTS = pa.schema(
    [
        *GROUP_KEY,
        ("judge", pa.string()),
        ("judge_category", pa.string()),
        ("n_responses", pa.int64()),
        ("unique", pa.int64()),  # null when unresolved: only the bounds are known
        ("resolved", pa.bool_()),
        ("unique_low", pa.int64()),  # every unresolved pair read as equivalent
        ("unique_high", pa.int64()),  # every unresolved pair read as different
        ("n_pairs_judged", pa.int64()),
        ("n_equivalent", pa.int64()),
        ("n_unresolved", pa.int64()),
        ("calls_made", pa.int64()),
        ("calls_saved", pa.int64()),
        ("order_disagreements", pa.int64()),
        ("cheap_decided", pa.int64()),
        ("agreement_sample", pa.bool_()),  # judged in full by every judge (judge.agreement_sample_rate)
        # The judge's equivalence classes and what they measure (engine.method.class_measures); null when the
        # count is unresolved. NoveltyBench's `distinct` is `unique`.
        ("classes", pa.list_(pa.int64())),  # class of each response, numbered by first appearance
        ("semantic_entropy", pa.float64()),  # nats
        ("semantic_entropy_norm", pa.float64()),  # / ln n
        ("utility", pa.float64()),  # NoveltyBench utility, patience 0.8, quality = (grade - 1) / 4; null ungraded
    ]
)


KEYS = ("prompt_id", "model", "strategy")


def components_table(judged: pa.Table, threshold: float) -> pa.Table:
    """One row per (group, judge) with its count of functionally unique responses (engine.method.components)."""
    return pa.Table.from_pylist(count_components(judged.to_pylist(), threshold), schema=COMPONENTS)


def with_utility(components: pa.Table, quality: pa.Table | None) -> pa.Table:
    """The components with NoveltyBench's utility per (group, judge): each response's quality is its checklist
    grade, the mean over the graders that read it, as (g - 1) / 4. Null where the classes are unknown or a response
    has no grade."""
    if quality is None or not components.num_rows:
        return components
    grades: dict[tuple, dict[int, list[float]]] = {}
    for q in quality.to_pylist():
        if q["grade"] is not None:
            grades.setdefault(tuple(q[k] for k in KEYS), {}).setdefault(q["sample_idx"], []).append(q["grade"])
    values = []
    for c in components.select([*KEYS, "classes", "n_responses"]).to_pylist():
        by_idx = grades.get(tuple(c[k] for k in KEYS), {})
        qualities = [grade_quality(sum(g) / len(g)) if (g := by_idx.get(i)) else None for i in range(c["n_responses"])]
        values.append(utility(c["classes"], qualities) if c["classes"] is not None else None)
    column = components.schema.get_field_index("utility")
    return components.set_column(column, "utility", pa.array(values, pa.float64()))


def vendi_of(pair_cosine: list[float] | None, responses: list[str] | None = None) -> float | None:
    """The Vendi score of a group from the metrics stage's cosine matrix (n×n, row-major), over the responses that
    answer (as the other general metrics: an empty response is no answer, and four empty ones read as perfectly
    homogeneous); null where fewer than two answer."""
    if not pair_cosine:
        return None
    n = int(round(len(pair_cosine) ** 0.5))
    if n * n != len(pair_cosine):
        return None
    matrix = np.asarray(pair_cosine, dtype=np.float64).reshape(n, n)
    if responses is not None and len(responses) == n:
        keep = np.array([has_answer(t) for t in responses], dtype=bool)
        if keep.sum() < 2:
            return None
        matrix = matrix[np.ix_(keep, keep)]
    return vendi_score(matrix)


def answering(frame: pa.Table) -> dict[tuple, list[bool]]:
    """Whether each response of each group answers (engine.method.judges.has_answer), by group key."""
    keys = zip(*(frame[k].to_pylist() for k in KEYS))
    return {tuple(key): [has_answer(t) for t in (responses or [])]
            for key, responses in zip(keys, frame["responses"].to_pylist())}


def _answers(answered: dict[tuple, list[bool]] | None, key: tuple, k: int) -> bool:
    flags = answered.get(key) if answered is not None else None
    return True if flags is None or k >= len(flags) else flags[k]


def group_traces(frame: pa.Table) -> list[list[str | None]]:
    """Each group's per-response reasoning traces (None where a response has none; groups from shards written
    before traces were kept, or responses imported without them, have none)."""
    if "traces" not in frame.column_names:
        return [[None] * len(r or []) for r in frame["responses"].to_pylist()]
    return [list(t) if t is not None else [None] * len(r or [])
            for t, r in zip(frame["traces"].to_pylist(), frame["responses"].to_pylist())]


def shared_traces(frame: pa.Table) -> list[str | None]:
    """Each group's one trace split over all its responses (system-prompt strategies), else None."""
    if "shared_trace" not in frame.column_names:
        return [None] * frame.num_rows
    return frame["shared_trace"].to_pylist()


def trace_status(responses: list[str] | None, traces: list[str | None], shared: str | None) -> str | None:
    """Whether a group's responses have reasoning traces to judge (see GROUPS); None for a group without
    responses."""
    if not responses:
        return None
    if shared:
        return "shared"
    have = sum(1 for t in traces[:len(responses)] if t and t.strip())  # whitespace is no trace (as no answer)
    return "traced" if have == len(responses) else "partial" if have else "none"


def explode_responses(frame: pa.Table) -> pa.Table:
    rows = []
    columns = frame.select(["prompt_id", "model", "strategy", "responses", "finish_reasons", "n_tokens"]).to_pylist()
    for g, traces in zip(columns, group_traces(frame)):
        for k, (text, reason, n) in enumerate(zip(g["responses"], g["finish_reasons"], g["n_tokens"])):
            rows.append({"prompt_id": g["prompt_id"], "model": g["model"], "strategy": g["strategy"],
                         "sample_idx": k, "text": text, "finish_reason": reason, "n_tokens": n,
                         "trace": traces[k] if k < len(traces) else None})
    return pa.Table.from_pylist(rows, schema=RESPONSES)


def explode_judgments(judged: pa.Table) -> pa.Table:
    rows = []
    for g in judged.select(["prompt_id", "model", "strategy", "judge", "pairs"]).to_pylist():
        for p in g["pairs"]:
            rows.append({"prompt_id": g["prompt_id"], "model": g["model"], "strategy": g["strategy"],
                         "judge": g["judge"], **p})
    return pa.Table.from_pylist(rows, schema=JUDGMENTS)


def explode_grades(grades: pa.Table, answered: dict[tuple, list[bool]] | None = None) -> pa.Table:
    """One row per graded response; a response that gives no answer (`answered`, from `answering`) has no grade,
    whatever a shard stored before the grade stage left such responses out (raw "<no answer>")."""
    from engine.stages.grade import NO_ANSWER

    rows = []
    for g in grades.to_pylist():
        key = tuple(g[k] for k in KEYS)
        for k, (grade, expected, raw) in enumerate(zip(g["grades"], g["expected_grades"], g["raws"])):
            if not _answers(answered, key, k):
                grade, expected, raw = None, None, NO_ANSWER
            rows.append({"prompt_id": g["prompt_id"], "model": g["model"], "strategy": g["strategy"],
                         "sample_idx": k, "grader": g["grader"], "grade": grade, "expected_grade": expected,
                         "raw": raw})
    return pa.Table.from_pylist(rows, schema=QUALITY)


def explode_accuracy(accuracy: pa.Table, answering: dict[tuple, list[bool]] | None = None) -> pa.Table:
    """One row per checked response; a response that gives no answer (`answering`) is not correct and not answered
    (engine.stages.accuracy.no_answer_check), whatever a shard stored before the stage left such responses out (one
    was sent to the grader and its grade kept)."""
    from engine.stages.accuracy import no_answer_check

    rows = []
    for g in accuracy.to_pylist():
        key = tuple(g[k] for k in KEYS)
        answered = g.get("answered") or [None] * len(g["correct"])
        for k, (correct, grade, extracted, exact, ans, raw) in enumerate(
                zip(g["correct"], g["grades"], g["extracted"], g["exact"], answered, g["raws"])):
            if not _answers(answering, key, k):
                none = no_answer_check()
                correct, grade, extracted, exact, ans, raw = (none[c] for c in ("correct", "grades", "extracted",
                                                                               "exact", "answered", "raws"))
            rows.append({"prompt_id": g["prompt_id"], "model": g["model"], "strategy": g["strategy"],
                         "sample_idx": k, "method": g["method"], "correct": correct, "grade": grade,
                         "extracted": extracted, "exact_match": exact, "answered": ans, "raw": raw})
    return pa.Table.from_pylist(rows, schema=ACCURACY)


REWARDS = pa.schema(
    [
        *GROUP_KEY,
        ("sample_idx", pa.int64()),
        ("reward", pa.float64()),
    ]
)


def explode_rewards(rewards: pa.Table, answered: dict[tuple, list[bool]] | None = None) -> pa.Table:
    """One row per scored response; a response that gives no answer has no reward (see explode_grades)."""
    rows = [{"prompt_id": g["prompt_id"], "model": g["model"], "strategy": g["strategy"], "sample_idx": k,
             "reward": r if _answers(answered, tuple(g[c] for c in KEYS), k) else None}
            for g in rewards.to_pylist() for k, r in enumerate(g["rewards"])]
    return pa.Table.from_pylist(rows, schema=REWARDS)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def groups_table(frame: pa.Table, components: pa.Table, metrics: pa.Table, quality: pa.Table | None,
                 accuracy: pa.Table | None = None, rewards: pa.Table | None = None,
                 judges: list[str] | None = None, trace_components: pa.Table | None = None,
                 trace_judges: list[str] | None = None) -> pa.Table:
    """One row per group: its category, unique responses per judge and their mean, general metrics, quality,
    accuracy (mean over the responses that could be checked; null where nothing was), and — where traces were
    judged (`trace_components`, by `trace_judges`) — the mean unique reasoning traces.

    `unique_mean` is the mean of every judge's count, known only when each one is resolved
    (engine.method.components); the judges whose count is unresolved, and those with no row at all for the group
    (their shard failed), are listed by name, and the mean's bounds take a missing judge's count as anywhere from 1
    to n. `judges` is the run's judges in config order (default: those present in `components`).
    """
    by_group: dict[tuple, dict[str, dict]] = {}
    for c in components.to_pylist():
        by_group.setdefault(tuple(c[k] for k in KEYS), {})[c["judge"]] = c
    if judges is None:
        judges = list(dict.fromkeys(components["judge"].to_pylist())) if components.num_rows else []
    general = {tuple(m[k] for k in KEYS): m for m in metrics.to_pylist()}
    # A response's quality: the mean over the graders that read it; a group's: the mean over its responses.
    by_response: dict[tuple, list[Any]] = {}
    for q in (quality.to_pylist() if quality is not None else []):
        if q["grade"] is not None:
            by_response.setdefault((*(q[k] for k in KEYS), q["sample_idx"]), []).append(q["grade"])
    grades: dict[tuple, list[Any]] = {}
    for (*key, _), values in by_response.items():
        grades.setdefault(tuple(key), []).append(sum(values) / len(values))
    checked: dict[tuple, list[bool]] = {}
    for a in (accuracy.to_pylist() if accuracy is not None else []):
        if a["correct"] is not None:
            checked.setdefault(tuple(a[k] for k in KEYS), []).append(a["correct"])
    reward: dict[tuple, list[float]] = {}
    for r in (rewards.to_pylist() if rewards is not None else []):
        reward.setdefault(tuple(r[k] for k in KEYS), []).append(r["reward"])
    traced: dict[tuple, dict[str, dict]] = {}
    for c in (trace_components.to_pylist() if trace_components is not None else []):
        traced.setdefault(tuple(c[k] for k in KEYS), {})[c["judge"]] = c
    statuses = [trace_status(r, t, sh) for r, t, sh in zip(frame["responses"].to_pylist(), group_traces(frame),
                                                            shared_traces(frame))]
    rows = []
    for g, status in zip(frame.to_pylist(), statuses):
        key = tuple(g[k] for k in KEYS)
        trace_rows = traced.get(key, {})
        trace_counted = [j for j in (trace_judges or []) if j in trace_rows and trace_rows[j]["resolved"]]
        trace_counted = trace_counted if trace_judges and len(trace_counted) == len(trace_judges) else []
        rows_by_judge = by_group.get(key, {})
        resolved = [j for j in judges if j in rows_by_judge and rows_by_judge[j]["resolved"]]
        per_judge = {j: rows_by_judge[j]["unique"] for j in resolved}
        counted = resolved if judges and len(resolved) == len(judges) and g["responses"] else []
        n_responses = len(g["responses"] or [])
        no_answer = sum(not has_answer(t) for t in g["responses"] or [])
        # A judge with no count bounds the mean as loosely as a count can be: anywhere from 1 to n.
        lows = [rows_by_judge[j]["unique_low"] if j in rows_by_judge else min(1, n_responses) for j in judges]
        highs = [rows_by_judge[j]["unique_high"] if j in rows_by_judge else n_responses for j in judges]
        m = general.get(key, {})
        graded = [x for x in grades.get(key, []) if x is not None]
        # A pending group was sent to no judge: no judge's shard is missing for it (its reason is its category); nor
        # is one for a group whose sampling failed (status error: never judged, counted as failed, pipeline._sampled).
        judged = bool(g["responses"]) and g["status"] != "error" and g.get("category_source") != PENDING
        rows.append(
            {
                "prompt_id": g["prompt_id"],
                "model": g["model"],
                "strategy": g["strategy"],
                "category": g["judge_category"],
                "category_source": g.get("category_source"),
                "gold_category": g["gold_category"],
                "classified": g["classified"],
                "n_responses": len(g["responses"]),
                "status": g["status"],
                "n_no_answer": no_answer,
                "unique_per_judge": list(per_judge.items()),
                # No responses, no count: a group the backend failed or whose parse found nothing stays null.
                "unique_mean": _mean([per_judge[j] for j in counted]) if counted else None,
                "judges_in_mean": counted,
                "unresolved_judges": [j for j in judges if j in rows_by_judge and not rows_by_judge[j]["resolved"]],
                "missing_judges": [j for j in judges if j not in rows_by_judge] if judged else [],
                # Bounds only where some judge judged the group (a pending or failed group has none).
                "unique_low_mean": _mean(lows) if g["responses"] and judged and bool(rows_by_judge) else None,
                "unique_high_mean": _mean(highs) if g["responses"] and judged and bool(rows_by_judge) else None,
                **{column: m.get(column) if metric.per_pair or not no_answer else None
                   for column, metric in GENERAL_METRICS.items()},
                "quality_mean": _mean(graded),
                "n_graded": len(graded),
                "accuracy": _mean([float(x) for x in checked.get(key, [])]),
                "n_checked": len(checked.get(key, [])),
                "reward_mean": _mean(reward.get(key, [])),
                # Null where the group has no reward rows at all (the reward stage's shard failed, or no model).
                "n_rewarded": sum(1 for x in reward[key] if x is not None) if key in reward else None,
                **_class_means([rows_by_judge[j] for j in counted]),
                "vendi": vendi_of(m.get("pair_cosine"), g["responses"]) if g["responses"] else None,
                "trace_status": status,
                "unique_trace_mean": _mean([trace_rows[j]["unique"] for j in trace_counted]),
                "trace_judges_in_mean": trace_counted,
                "unique_mean_trace_judges": (_mean([per_judge[j] for j in trace_judges or []]) if trace_judges
                                             and g["responses"] and all(j in per_judge for j in trace_judges)
                                             else None),
                "trace_unresolved_judges": [j for j in (trace_judges or [])
                                            if j in trace_rows and not trace_rows[j]["resolved"]],
                "trace_missing_judges": [j for j in (trace_judges or []) if j not in trace_rows]
                if status == "traced" and judged else [],
            }
        )
    return pa.Table.from_pylist(rows, schema=GROUPS)


def _class_means(counted: list[dict[str, Any]]) -> dict[str, float | None]:
    """Means over the judges of unique_mean (every judge, each resolved; none otherwise)."""
    utilities = [c["utility"] for c in counted]
    return {
        "semantic_entropy_mean": _mean([c["semantic_entropy"] for c in counted]),
        "semantic_entropy_norm_mean": _mean([c["semantic_entropy_norm"] for c in counted
                                             if c["semantic_entropy_norm"] is not None]),
        # An ungraded response leaves a judge's utility unknown; the mean is then unknown too, not a smaller mean.
        "utility_mean": _mean(utilities) if utilities and None not in utilities else None,
    }
