import numpy as np
import pytest
from sklearn import metrics as skm

from anomaly.calibration import metrics
from anomaly.calibration.threshold import f1_optimal_threshold


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.2
    s = rng.normal(size=500) + 1.5 * y
    s[:40] = np.round(s[:40])  # ties
    return s, y


def test_auroc_auprc_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    assert metrics.auroc(s, y) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert metrics.auprc(s, y) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_roc_curve_matches_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    fpr, tpr = metrics.roc_curve(s, y)
    ref_fpr, ref_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)


def test_at_threshold_counts() -> None:
    s = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    y = np.array([0, 0, 1, 0, 1])
    r = metrics.at_threshold(s, y, 0.5)
    assert (r.precision, r.recall, r.fpr, r.flagged) == (0.5, 0.5, 1 / 3, 2)


def test_f1_optimal_threshold_is_best(scored: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = scored
    best = f1_optimal_threshold(s, y)
    f1s = [skm.f1_score(y, s > t) for t in np.unique(s)]
    assert best.f1 == pytest.approx(max(f1s), abs=1e-9)
    assert skm.f1_score(y, s > best.threshold) == pytest.approx(best.f1, abs=1e-9)


def test_single_class_is_rejected() -> None:
    with pytest.raises(ValueError, match="both normal"):
        metrics.auroc(np.arange(3.0), np.zeros(3))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_f1_optimal_threshold_where_the_top_scores_are_normal() -> None:
    """The highest scores normal: precision and recall 0 there, F1 0, without a 0/0
    warning on the user's console (``anomaly evaluate`` printed one)."""
    best = f1_optimal_threshold(np.array([3.0, 2.0, 1.0, 0.0]),
                                np.array([False, False, False, True]))
    assert (best.f1, best.precision, best.recall) == (0.4, 0.25, 1.0)
