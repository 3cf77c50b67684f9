"""The threshold keeps the FPR it promises on fresh normal rows: over 20 seeded splits the
mean test FPR is within 20% of the target, and the measured FPR lies inside the interval the
product predicts for that many rows in at least 90% of them (benchmarks/fpr_coverage.py does
the same on real tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomaly.calibration.threshold import observed_fpr_interval
from anomaly.inference import Scorer
from tests.conftest import make_tabular
from training import tabular_config, train_tabular


def test_mean_test_fpr_and_coverage_over_splits(tmp_path: Path) -> None:
    rows = make_tabular(1500, seed=21)
    rows.pop("is_anomaly")
    fprs, inside = [], 0
    for seed in range(20):
        perm = np.random.default_rng(seed).permutation(1500)
        train = {k: v[perm[:900]] for k, v in rows.items()}
        test = {k: v[perm[900:]] for k, v in rows.items()}
        report = train_tabular(train, tmp_path / f"b{seed}", "p", tabular_config(
            target_fpr=0.05, epochs=4, kl_warmup_epochs=1, seed=seed, progress=False))
        t = report.manifest.threshold
        assert t.method == "holdout" and t.rank is not None
        fpr = float(np.mean(Scorer(report.path).score_rows(test).scores > t.value))
        lo, hi = observed_fpr_interval(t.calibration_size, t.rank, 600)
        fprs.append(fpr)
        inside += lo <= fpr <= hi
    assert abs(np.mean(fprs) - 0.05) <= 0.2 * 0.05, np.mean(fprs)
    assert inside >= 18, inside


def test_a_cross_fitted_bundle_ships_a_fold_model(tmp_path: Path) -> None:
    """Under cross-fitting the shipped model is the first fold's: it scores that fold's
    out-of-fold rows exactly as calibration did (those scores are in the bundle), and was
    fitted on the other folds' rows only."""
    from training.splits import plan_splits

    rows = make_tabular(60, seed=5)
    rows.pop("is_anomaly")
    config = tabular_config(target_fpr=0.05, seed=2, progress=False)
    report = train_tabular(rows, tmp_path / "b", "cf", config)
    assert report.manifest.threshold.method == "cross_fit"
    plan = plan_splits(60, config.holdout_fraction, config.target_fpr, config.seed)
    fit_rows, out_rows = plan.folds[0]
    assert report.manifest.training.rows_train == fit_rows.size == 48
    held = Scorer(report.path).score_rows({k: v[out_rows] for k, v in rows.items()}).scores
    calibration = np.asarray(report.calibration_scores)
    nearest = np.abs(calibration[None, :] - held[:, None]).min(axis=1)  # (12,)
    assert nearest.max() <= 1e-4 * np.abs(held).max(), nearest
    others = np.setdiff1d(np.arange(60), out_rows)
    seen = Scorer(report.path).score_rows({k: v[others] for k, v in rows.items()}).scores
    assert np.median(seen) < np.median(held)  # fitted on, so scored lower on the whole
