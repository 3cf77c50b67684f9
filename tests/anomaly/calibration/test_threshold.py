import numpy as np
import pytest

from anomaly.calibration.threshold import (
    bootstrap_fpr_interval,
    calibrate,
    p_values,
    threshold_for_fpr,
)


def test_threshold_leaves_at_most_alpha_above() -> None:
    cal = np.random.default_rng(0).normal(size=1000)
    for alpha in (0.001, 0.01, 0.05, 0.2):
        t = threshold_for_fpr(cal, alpha)
        assert np.mean(cal > t) <= alpha
        assert np.mean(cal >= t) >= alpha


def test_p_values_are_conformal() -> None:
    rng = np.random.default_rng(1)
    cal = np.sort(rng.normal(size=2000))
    fresh = rng.normal(size=20000)
    p = p_values(fresh, cal)
    assert p.min() > 0 and p.max() <= 1
    # Uniform under the null: each decile holds ~10%.
    hist = np.histogram(p, bins=10, range=(0, 1))[0] / p.size
    assert np.all(np.abs(hist - 0.1) < 0.015)
    assert p_values(np.array([cal.max() + 1]), cal)[0] == pytest.approx(1 / 2001)
    assert p_values(np.array([cal.min() - 1]), cal)[0] == 1.0


def test_bootstrap_interval_matches_order_statistic_spread() -> None:
    rng = np.random.default_rng(2)
    cal = rng.normal(size=4000)
    lo, hi = bootstrap_fpr_interval(cal, 0.05, np.random.default_rng(0))
    se = np.sqrt(0.05 * 0.95 / 4000)
    assert lo < 0.05 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_calibrate_table_and_fresh_fpr() -> None:
    rng = np.random.default_rng(4)
    info = calibrate(rng.gamma(2.0, size=5000), 0.01, np.random.default_rng(0), seed=0)
    assert [p.fpr for p in info.table] == sorted(p.fpr for p in info.table)
    assert 0.01 in [p.fpr for p in info.table]
    fresh = rng.gamma(2.0, size=200_000)
    observed = float(np.mean(fresh > info.value))
    assert info.fpr_ci[0] <= observed <= info.fpr_ci[1]


def test_bootstrap_interval_has_nominal_coverage() -> None:
    """Over many calibration sets, the true FPR of the calibrated threshold falls inside the
    reported 95% interval about 95% of the time (exponential scores: true FPR = exp(-t))."""
    rng = np.random.default_rng(7)
    hits = 0
    trials = 150
    for _ in range(trials):
        cal = rng.exponential(size=300)
        t = threshold_for_fpr(cal, 0.02)
        lo, hi = bootstrap_fpr_interval(cal, 0.02, rng, n_boot=400)
        hits += lo <= np.exp(-t) <= hi
    assert 0.88 <= hits / trials <= 0.995
