"""Thresholds from order statistics keep their promise: expected FPR at most the target, an
exact interval with its nominal coverage, valid p-values."""

import numpy as np
import pytest
from scipy import stats

from anomaly.calibration.threshold import (
    PValues,
    beta_cdf,
    beta_ppf,
    calibrate,
    expected_fpr,
    fpr_interval,
    p_values,
    threshold_for_fpr,
    threshold_rank,
)


@pytest.mark.parametrize("a, b", [(1, 1), (2.5, 7), (50, 950), (1, 4000), (3000, 12)])
def test_beta_matches_scipy(a: float, b: float) -> None:
    for x in (1e-6, 0.001, 0.05, 0.3, 0.5, 0.9, 0.999):
        assert beta_cdf(x, a, b) == pytest.approx(stats.beta.cdf(x, a, b), abs=1e-10)
    for q in (0.025, 0.5, 0.975):
        assert beta_ppf(q, a, b) == pytest.approx(stats.beta.ppf(q, a, b), rel=1e-7, abs=1e-12)


def test_rank_is_the_split_conformal_rule() -> None:
    assert threshold_rank(99, 0.01) == 99  # ceil(100 * 0.99): the largest score
    assert threshold_rank(999, 0.01) == 990
    assert threshold_rank(1000, 0.05) == 951
    for n in (20, 57, 199, 1000, 4321):
        for alpha in (0.001, 0.01, 0.05, 0.2):
            j = threshold_rank(n, alpha)
            assert 1 <= j <= n
            if (n + 1) * alpha >= 1:  # the data can support alpha
                assert expected_fpr(n, j) <= alpha + 1e-12
                assert expected_fpr(n, j) > alpha - 1 / (n + 1)  # and it is the tightest


def test_too_few_scores_use_the_largest_and_say_what_they_support() -> None:
    cal = np.arange(30.0)
    info = calibrate(cal, 0.01, seed=0)
    assert info.rank == 30 and info.value == 29.0
    assert info.expected_fpr == pytest.approx(1 / 31) == info.min_supported_fpr
    assert info.fpr_ci[0] < 1 / 31 < info.fpr_ci[1]


def test_interval_and_mean_fpr_over_many_calibration_sets() -> None:
    """Exponential scores: the true FPR of threshold t is exp(-t). Over many calibration
    sets the mean true FPR is the expected FPR (at most the target) and the 95% interval
    covers the true FPR about 95% of the time, small n included."""
    rng = np.random.default_rng(7)
    for n, alpha in ((60, 0.05), (300, 0.02), (2000, 0.01)):
        true, hits = [], 0
        for _ in range(400):
            info = calibrate(rng.exponential(size=n), alpha, seed=0)
            fpr = float(np.exp(-info.value))
            true.append(fpr)
            hits += info.fpr_ci[0] <= fpr <= info.fpr_ci[1]
        assert np.mean(true) == pytest.approx(info.expected_fpr, rel=0.12)
        assert np.mean(true) <= alpha * 1.12
        assert 0.92 <= hits / 400 <= 0.98, (n, hits)


def test_threshold_for_fpr_agrees_with_the_table() -> None:
    cal = np.random.default_rng(4).gamma(2.0, size=5000)
    info = calibrate(cal, 0.01, seed=0)
    assert [p.fpr for p in info.table] == sorted(p.fpr for p in info.table)
    assert all(p.threshold == threshold_for_fpr(cal, p.fpr) for p in info.table)
    assert info.value == threshold_for_fpr(cal, 0.01) == np.sort(cal)[info.rank - 1]
    assert info.method == "holdout" and info.rank == threshold_rank(5000, 0.01) == 4951
    assert fpr_interval(5000, info.rank) == info.fpr_ci


def test_p_values_are_conformal() -> None:
    rng = np.random.default_rng(1)
    cal = np.sort(rng.normal(size=2000))
    fresh = rng.normal(size=20000)
    p = p_values(fresh, cal)
    assert p.min() > 0 and p.max() <= 1
    hist = np.histogram(p, bins=10, range=(0, 1))[0] / p.size  # uniform under the null
    assert np.all(np.abs(hist - 0.1) < 0.015)
    assert p_values(np.array([cal.max() + 1]), cal)[0] == pytest.approx(1 / 2001)
    assert p_values(np.array([cal.min() - 1]), cal)[0] == 1.0


def test_p_value_lookup_is_the_count_bit_for_bit() -> None:
    """PValues (the Scorer's table lookup) against (1 + #{calibration >= s}) / (n + 1),
    with ties, scores on calibration values, beyond both ends and a batch of one."""
    cal = np.sort(np.array([0.5, 1.0, 1.0, 1.0, 2.5, 3.0, 7.0]))
    scores = np.array([-1.0, 0.5, 0.75, 1.0, 1.5, 3.0, 6.9, 7.0, 8.0, np.inf])
    counted = np.array([(1 + np.count_nonzero(cal >= s)) / (cal.size + 1) for s in scores])
    lookup = PValues(cal)
    np.testing.assert_array_equal(lookup(scores), counted)
    np.testing.assert_array_equal(p_values(scores, cal), counted)
    assert lookup(scores[3:4]).tolist() == [counted[3]] == [7 / 8]  # 6 of 7 are >= 1.0
    assert PValues(np.array([]))(np.array([1.0])).tolist() == [1.0]


def test_observed_fpr_interval_is_the_beta_binomial() -> None:
    from anomaly.calibration.threshold import observed_fpr_interval

    for n, rank, m in ((268, 267, 89), (1000, 951, 2000), (50, 50, 300)):
        a, b = n + 1 - rank, rank
        lo, hi = observed_fpr_interval(n, rank, m)
        dist = stats.betabinom(m, a, b)
        assert lo == dist.ppf(0.025) / m and hi == dist.ppf(0.975) / m, (n, rank, m)


def test_a_measured_test_fpr_falls_in_the_observed_interval() -> None:
    """Calibrate on 200 scores, measure on 150 fresh ones: 95% of such runs land inside."""
    from anomaly.calibration.threshold import observed_fpr_interval

    rng = np.random.default_rng(11)
    inside = 0
    for _ in range(400):
        info = calibrate(rng.normal(size=200), 0.05, seed=0)
        assert info.rank is not None
        lo, hi = observed_fpr_interval(200, info.rank, 150)
        inside += lo <= float(np.mean(rng.normal(size=150) > info.value)) <= hi
    assert 0.93 <= inside / 400 <= 0.995
