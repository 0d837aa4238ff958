"""Verdicts that cannot be read never count as "different": end to end through the real pipeline (the local
executor: what is counted does not depend on where batches run, and the Ray path has its own end-to-end tests —
tests/test_integration.py, test_executor.py, test_hub_models.py).

Two deterministic judges leave chosen pairs unparseable: judge "a" every pair of classes {0, 1}, judge "b" every
pair within class 1. The expected counts, bounds and exclusions are computed here by brute force over all pairs
of each group (no pruning), independently of the engine's union-find, and the tables must equal them exactly.
"""

from __future__ import annotations

import itertools
import re

import pytest

from engine.config import config_from_dict
from engine.execution.pipeline import Pipeline
from engine.report.data import report_data

JUDGE_A = {"name": "a", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
           "options": {"unparseable_classes": [[0, 1]]}, "batch_size": 64}
JUDGE_B = {"name": "b", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
           "options": {"unparseable_classes": [[1, 1]]}, "batch_size": 64}
UNPARSEABLE = {"a": {frozenset((0, 1))}, "b": {frozenset((1,))}}


def components(n: int, edges: list[tuple[int, int]]) -> int:
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in edges:
        parent[find(i)] = find(j)
    return len({find(x) for x in range(n)})


def expected(classes: list[int], judge: str) -> dict:
    """Brute force over all pairs: the count if every unresolved pair is different / equivalent."""
    n = len(classes)
    pairs = list(itertools.combinations(range(n), 2))
    unresolved = [(i, j) for i, j in pairs if frozenset((classes[i], classes[j])) in UNPARSEABLE[judge]]
    equivalent = [(i, j) for i, j in pairs if (i, j) not in unresolved and classes[i] == classes[j]]
    high, low = components(n, equivalent), components(n, equivalent + unresolved)
    return {"unique_high": high, "unique_low": low, "resolved": high == low, "unique": high if high == low else None}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = config_from_dict({
        "run_dir": str(tmp_path_factory.mktemp("unresolved") / "run"),
        "prompts": {"source": "builtin", "per_category": 1},
        "n": 4,
        "strategies": ["temperature", "regen_general"],
        "generators": [{"name": "g", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
                        "batch_size": 64}],
        "judges": [JUDGE_A, JUDGE_B],
        "quality": {"enabled": False},
        "accuracy": {"enabled": False},
        "execution": {"executor": "local", "shard_size": 4},
    })
    pipeline = Pipeline(cfg, progress=False)
    try:
        result = pipeline.run()
    finally:
        pipeline.close()
    return cfg, result


def group_classes(result) -> dict[tuple, list[int]]:
    out: dict[tuple, list[int]] = {}
    for r in result.tables["responses"].sort_by("sample_idx").to_pylist():
        out.setdefault((r["prompt_id"], r["model"], r["strategy"]), []).append(
            int(re.match(r"class (\d+)", r["text"]).group(1)))
    return out


def test_components_equal_the_brute_force_counts_and_bounds(run):
    _, result = run
    classes = group_classes(result)
    rows = result.tables["components"].to_pylist()
    assert len(rows) == 2 * len(classes)
    kinds = set()
    for c in rows:
        want = expected(classes[(c["prompt_id"], c["model"], c["strategy"])], c["judge"])
        got = {k: c[k] for k in want}
        assert got == want, (c["judge"], classes[(c["prompt_id"], c["model"], c["strategy"])])
        kinds.add((c["judge"], c["resolved"]))
    # The fixture exercises every case: each judge resolved on some groups and unresolved on others.
    assert kinds == {("a", True), ("a", False), ("b", True), ("b", False)}


def test_unresolved_pairs_are_recorded_never_as_different(run):
    _, result = run
    judgments = result.tables["judgments"].to_pylist()
    unparsed = [j for j in judgments if j["verdict"] == "unparsed"]
    assert unparsed and all(j["p_equivalent"] is None and j["read_from"] is None for j in unparsed)
    assert all(j["calls"] == 2 for j in unparsed)  # asked again once with the reminder
    per_group = {}
    for j in judgments:
        key = (j["prompt_id"], j["model"], j["strategy"], j["judge"])
        per_group[key] = per_group.get(key, 0) + (j["verdict"] == "unparsed")
    for c in result.tables["components"].to_pylist():
        assert c["n_unresolved"] == per_group.get((c["prompt_id"], c["model"], c["strategy"], c["judge"]), 0)


def test_the_mean_is_over_every_judge_or_unknown_and_names_the_unresolved(run):
    # A mean over whichever judges resolved set one panel's groups beside another's: with judge a strict and b lax,
    # a group b left unresolved read as a's count alone, and a cell's mean could leave its own bounds.
    _, result = run
    classes = group_classes(result)
    for g in result.tables["groups"].to_pylist():
        cs = classes[(g["prompt_id"], g["model"], g["strategy"])]
        want = {j: expected(cs, j) for j in ("a", "b")}
        resolved = [j for j in ("a", "b") if want[j]["resolved"]]
        assert g["judges_in_mean"] == (["a", "b"] if len(resolved) == 2 else [])
        assert g["unresolved_judges"] == [j for j in ("a", "b") if not want[j]["resolved"]]
        assert g["missing_judges"] == []
        assert dict(g["unique_per_judge"]) == {j: want[j]["unique"] for j in resolved}
        if len(resolved) == 2:
            assert g["unique_mean"] == pytest.approx((want["a"]["unique"] + want["b"]["unique"]) / 2)
        else:
            assert g["unique_mean"] is None
        assert g["unique_low_mean"] <= (g["unique_mean"] or g["unique_low_mean"]) <= g["unique_high_mean"]
        assert g["unique_low_mean"] == pytest.approx((want["a"]["unique_low"] + want["b"]["unique_low"]) / 2)
        assert g["unique_high_mean"] == pytest.approx((want["a"]["unique_high"] + want["b"]["unique_high"]) / 2)


def test_the_report_excludes_and_counts_by_reason(run):
    cfg, result = run
    classes = group_classes(result)
    verdicts = [{j: expected(cs, j)["resolved"] for j in ("a", "b")} for cs in classes.values()]
    none = sum(1 for v in verdicts if not all(v.values()))
    partial = sum(1 for v in verdicts if any(v.values()) and not all(v.values()))
    assert none and partial  # the fixture has groups one judge resolved and the other did not
    u = report_data(result, cfg)["unique"]
    excluded = {e["reason"]: 0 for e in u["excluded"]}
    for e in u["excluded"]:
        excluded[e["reason"]] += e["groups"]
    assert excluded == {"unresolved: a judge's count could not be read (unreadable verdicts)": none}
    assert u["complete_total"] == len(classes) - none
    assert sum(c["groups"] for c in u["unpaired_cells"] if c["category"] == "all") == len(classes) - none
    # Figure 2 itself is paired: per model, only prompts complete under every strategy.
    paired = {g["prompt_id"] for g in result.tables["groups"].to_pylist()} - {
        pid for (pid, _, _), cs in classes.items() if not all(expected(cs, j)["resolved"] for j in ("a", "b"))}
    assert sum(c["groups"] for c in u["cells"] if c["category"] == "all") == len(paired) * len(cfg.strategies)
