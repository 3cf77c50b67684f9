"""How normal rows are split: the calibration part is sized so that its conformal rank
promises the target FPR on average, not a rounding of it, and no row is lost."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.calibration.threshold import expected_fpr, threshold_rank
from training.splits import MAX_VAL_ROWS, calibration_size, plan_splits


@pytest.mark.parametrize(("n_cal", "alpha", "size"), [
    (25, 0.05, 19),  # 25 scores: 1/26 = 0.038 at best; 19: exactly 0.05
    (43, 0.05, 39),
    (199, 0.01, 199),  # already exact
    (198, 0.01, 99),  # 198 scores would promise 0.005, half the target
    (476, 0.01, 399),
    (100, 0.03, 99),
    (19, 0.05, 19),
    (35, 0.03, 33),  # 1/alpha not an integer: the nearest from below (0.0294)
])
def test_calibration_size_promises_the_target_on_average(n_cal: int, alpha: float,
                                                         size: int) -> None:
    m = calibration_size(n_cal, alpha)
    assert m == size
    promised = expected_fpr(m, threshold_rank(m, alpha))
    assert promised <= alpha + 1e-12
    assert promised >= expected_fpr(n_cal, threshold_rank(n_cal, alpha)) - 1e-12


def test_calibration_size_never_promises_more_than_the_target() -> None:
    for alpha in (0.001, 0.01, 0.02, 0.05, 0.1, 0.25):
        for n_cal in range(int(np.ceil(1 / alpha)) - 1, 1200, 7):
            m = calibration_size(n_cal, alpha)
            assert (n_cal + 1) // 2 <= m <= n_cal
            assert expected_fpr(m, threshold_rank(m, alpha)) <= alpha + 1e-12


def test_trimmed_calibration_rows_go_to_fitting() -> None:
    plan = plan_splits(123, 0.2, 0.05, seed=3)  # glass's normal training rows
    assert plan.method == "holdout"
    assert plan.cal.size == 19 and plan.val.size == 12 and plan.train.size == 92
    parts = np.concatenate([plan.train, plan.val, plan.cal])
    np.testing.assert_array_equal(np.sort(parts), np.arange(123))
    assert plan_splits(123, 0.2, 0.05, seed=3).cal.tolist() == plan.cal.tolist()


def test_too_few_rows_for_a_holdout_are_cross_fitted() -> None:
    plan = plan_splits(123, 0.2, 0.01, seed=0)  # 25 scores cannot support 0.01
    assert plan.method == "cross_fit" and len(plan.folds) == 5
    out = np.sort(np.concatenate([o for _, o in plan.folds]))
    np.testing.assert_array_equal(out, np.arange(123))


def test_early_stopping_rows_are_capped_and_the_rest_fitted() -> None:
    plan = plan_splits(1_000_000, 0.2, 0.01, seed=0)
    assert plan.val.size == MAX_VAL_ROWS
    assert plan.train.size + plan.val.size + plan.cal.size == 1_000_000
    assert plan_splits(100_000, 0.2, 0.01, seed=0).val.size == 10_000
