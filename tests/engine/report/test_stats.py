"""engine.report.stats: bootstrap intervals, Spearman with intervals, Cohen's kappa, confusion matrices."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from engine.report.stats import (
    bootstrap_mean_ci,
    bootstrap_weights,
    cohen_kappa,
    confusion_matrix,
    paired_bootstrap_diff_ci,
    per_class_recall,
    spearman_with_ci,
)


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 200, 2000):
        x = rng.normal(2.0, 1.0, size=n)
        est = bootstrap_mean_ci(x, resamples=2000, seed=1)
        assert est.low < est.value < est.high
        assert est.value == pytest.approx(x.mean())
        assert est.n == n and est.clusters == n
        widths.append(est.high - est.low)
    assert widths[0] > widths[1] > widths[2]
    # The width of a 95% interval of a mean is about 2 × 1.96 σ/√n.
    assert widths[2] == pytest.approx(2 * 1.96 / math.sqrt(2000), rel=0.15)


def test_bootstrap_is_reproducible_with_a_seed_and_varies_without_the_same_one():
    x = np.random.default_rng(0).exponential(size=50)
    a = bootstrap_mean_ci(x, resamples=500, seed=7)
    b = bootstrap_mean_ci(x, resamples=500, seed=7)
    c = bootstrap_mean_ci(x, resamples=500, seed=8)
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)


def test_bootstrap_matches_a_loop_over_resamples():
    # The weight-matrix bootstrap must be the plain resample-and-average bootstrap, draw for draw.
    x = np.random.default_rng(5).normal(size=30)
    rng = np.random.default_rng(11)
    (w,) = list(bootstrap_weights(np.arange(30), 30, 200, rng))
    rng = np.random.default_rng(11)
    draws = rng.integers(0, 30, size=(200, 30))
    assert np.allclose((w @ x) / w.sum(axis=1), x[draws].mean(axis=1))


def test_bootstrap_runs_in_chunks_without_changing_the_result(monkeypatch):
    import engine.report.stats as S

    x = np.random.default_rng(2).normal(size=40)
    whole = bootstrap_mean_ci(x, resamples=300, seed=4)
    monkeypatch.setattr(S, "MAX_CELLS", 40 * 7)  # 7 resamples per chunk
    chunked = bootstrap_mean_ci(x, resamples=300, seed=4)
    assert (whole.low, whole.high) == pytest.approx((chunked.low, chunked.high))


def test_cluster_bootstrap_resamples_whole_clusters():
    # Two clusters with values 0,0,0 and 10: resampling clusters gives means 0, 2.5 or 10 only.
    x = [0.0, 0.0, 0.0, 10.0]
    est = bootstrap_mean_ci(x, clusters=["p", "p", "p", "q"], resamples=400, seed=0)
    assert est.clusters == 2 and est.value == 2.5
    assert est.low == 0.0 and est.high == 10.0
    assert "only 2 prompts" in est.note


def test_degenerate_inputs_give_nan_with_a_reason_not_an_error():
    empty = bootstrap_mean_ci([], resamples=10)
    assert math.isnan(empty.value) and empty.note == "no observations"
    one = bootstrap_mean_ci([3.0], resamples=10)
    assert one.value == 3.0 and math.isnan(one.low) and "no interval" in one.note
    with_missing = bootstrap_mean_ci([1.0, None, float("nan"), 3.0], resamples=100)
    assert with_missing.value == 2.0 and with_missing.n == 2
    assert with_missing.to_dict()["value"] == 2.0
    assert bootstrap_mean_ci([], resamples=10).to_dict()["low"] is None


def test_paired_difference_is_b_minus_a_with_an_interval_excluding_zero_when_shifted():
    rng = np.random.default_rng(9)
    a = rng.normal(size=100)
    b = a + 0.8 + rng.normal(scale=0.1, size=100)
    est = paired_bootstrap_diff_ci(a, b, resamples=1000, seed=0)
    assert est.value == pytest.approx(float(np.mean(b - a)))
    assert 0.7 < est.low < est.value < est.high < 0.9
    with pytest.raises(ValueError):
        paired_bootstrap_diff_ci([1.0], [1.0, 2.0])


def test_spearman_of_monotone_data_is_one_and_reversed_is_minus_one():
    x = np.arange(20.0)
    up = spearman_with_ci(x, x ** 3, resamples=200)
    down = spearman_with_ci(x, -np.exp(x / 5), resamples=200)
    assert up.value == pytest.approx(1.0) and up.low == pytest.approx(1.0) and up.high == pytest.approx(1.0)
    assert down.value == pytest.approx(-1.0)


def test_spearman_point_estimate_is_scipys_and_the_interval_covers_it():
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    x[::7] = np.round(x[::7])  # ties, which the resample ranks must average like scipy does
    est = spearman_with_ci(x, y, resamples=500, seed=2)
    assert est.value == pytest.approx(sps.spearmanr(x, y).statistic)
    assert est.low < est.value < est.high


def test_spearman_resample_ranks_match_scipy_on_the_expanded_sample():
    from engine.report.stats import _weighted_pearson, _weighted_ranks

    x = np.array([1, 1, 2, 3, 3, 4, 5, 5.0])
    y = np.array([3, 1, 2, 2, 5, 4, 4, 1.0])
    w = np.array([[2, 0, 1, 1, 3, 0, 1, 2], [1, 1, 1, 1, 1, 1, 1, 1]], dtype=float)
    got = _weighted_pearson(_weighted_ranks(x, w), _weighted_ranks(y, w), w)
    for row, value in zip(w, got):
        idx = np.repeat(np.arange(8), row.astype(int))
        assert value == pytest.approx(sps.spearmanr(x[idx], y[idx]).statistic)


def test_spearman_undefined_cases_are_nan_with_the_reason():
    const = spearman_with_ci([1, 2, 3, 4], [2, 2, 2, 2], names=("vocab", "unique count"))
    assert math.isnan(const.value) and "unique count constant" in const.note
    few = spearman_with_ci([1, 2], [1, 2])
    assert math.isnan(few.value) and "too few" in few.note
    # Mostly constant y: some resamples are constant; they are counted and left out of the interval.
    partly = spearman_with_ci(list(range(12)), [1] * 11 + [2], resamples=300, seed=0)
    assert not math.isnan(partly.value) and "resamples constant" in partly.note


def test_cohen_kappa_on_a_known_table():
    # Classic example: 50 items, agreement 0.7, chance agreement 0.5 → kappa 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    kappa, note = cohen_kappa(a, b)
    assert kappa == pytest.approx(0.4) and note == ""
    assert cohen_kappa(a, a)[0] == pytest.approx(1.0)
    same_single, why = cohen_kappa(["x"] * 5, ["x"] * 5)
    assert math.isnan(same_single) and "same single label" in why
    assert math.isnan(cohen_kappa([], [])[0])


def test_confusion_matrix_and_recall():
    truth = ["A", "A", "B", "B", "B", "C"]
    pred = ["A", "B", "B", "B", None, "Z"]
    m = confusion_matrix(truth, pred, ["A", "B", "C", None])
    assert m.tolist() == [[1, 1, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    recall = per_class_recall(m)
    assert recall[0] == 0.5 and recall[1] == pytest.approx(2 / 3)
    assert math.isnan(recall[2])  # C's only item was predicted outside the labels: not counted
