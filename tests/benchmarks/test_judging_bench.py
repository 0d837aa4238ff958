"""benchmarks/judging.py's run tables: per judge and category, and the calibrated judge alone through the judging
program (its settings accepted by the config, a pair without a probability unresolved, not a crash)."""

from __future__ import annotations

import math

import numpy as np

from tests.support.benchmarks import load_benchmark


def load_bench():
    return load_benchmark("judging")


def component(judge: str, category: str, made: int, saved: int) -> dict:
    return {"judge": judge, "judge_category": category, "n_responses": 5, "calls_made": made, "calls_saved": saved}


def test_own_judges_are_counted_apart():
    bench = load_bench()
    comps = [component("smollm2-135m", "A", 4, 6), component("calibrated", "A", 0, 0),
             component("smollm2-135m", "A", 10, 0), component("calibrated", "A", 0, 0)]
    rows = bench.own_judges_table(comps)[2:]
    assert rows == ["| calibrated | A | 2 | 20 | 0 | 0 | 0% |", "| smollm2-135m | A | 2 | 20 | 14 | 6 | 30% |"]


def test_calibrated_alone_is_a_valid_config():
    cascade = load_bench().calibrated_alone().cascade
    assert cascade.enabled and cascade.low < 0.5 <= cascade.high and cascade.audit_rate == 0.0


def test_rejudged_decides_every_pair_with_a_probability_and_leaves_nan_unresolved():
    bench = load_bench()
    texts = ["one answer", "another answer", "a third"]
    decided = np.array([0.9, 0.1, 0.2])  # P per pair (0,1), (0,2), (1,2)
    unreadable = np.array([math.nan, 0.7, math.nan])  # (0,1) and (1,2) no probability; (0,2) equivalent
    merged = np.array([0.9, 0.6, 0.1])
    rows = bench.rejudged_table([("A", texts, merged), ("B", texts, decided), ("C", texts, unreadable)])[2:]
    # A: (0,1) and (0,2) equivalent, (1,2) pruned (already connected): 2 judgments of 3.
    # B: (0,1) joins 0 and 1, (0,2) different, (1,2) judged too (2 joined neither): 3 judgments, none unresolved.
    # C: (0,1) unresolved, (0,2) equivalent, (1,2) unresolved: 3 judgments, 2 unresolved.
    assert rows == ["| A | 1 | 3 | 2 | 0 | 33% |", "| B | 1 | 3 | 3 | 0 | 0% |", "| C | 1 | 3 | 3 | 2 | 0% |"]
