"""The Scorer's contract around the graph: shapes, bad input, kinds, p-values, providers."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from anomaly.calibration import p_values
from anomaly.errors import InputError
from anomaly.inference import Scorer


def test_scores_flags_and_p_values_agree(tabular_bundle: Path) -> None:
    scorer = Scorer(tabular_bundle)
    x = np.random.default_rng(0).normal(size=(50, scorer.input_dim)).astype(np.float32)
    r = scorer.score(x)
    assert r.scores.shape == (50,) and r.feature_scores.shape == (50, scorer.input_dim)
    np.testing.assert_array_equal(r.is_anomaly, r.scores > scorer.threshold)
    cal = scorer.bundle.calibration_scores
    np.testing.assert_array_equal(r.p_values, p_values(r.scores, cal))
    # the lookup table gives the counting definition, bit for bit
    counted = [(1 + np.count_nonzero(cal >= s)) / (cal.size + 1) for s in r.scores]
    np.testing.assert_array_equal(r.p_values, counted)
    with pytest.raises(FrozenInstanceError):
        r.threshold = 0.0  # type: ignore[misc]
    assert r.rows(0, 50) is r and r.rows(3, 5).p_values.tolist() == counted[3:5]
    assert r == r.rows(0, 50) and "threshold=" in repr(r)
    assert scorer.graph.providers[-1] == "CPUExecutionProvider"
    assert scorer.provider == scorer.graph.providers[0]


def test_bad_arrays_are_input_errors(tabular_bundle: Path) -> None:
    scorer = Scorer(tabular_bundle)
    with pytest.raises(InputError, match="expected input of shape"):
        scorer.score(np.zeros((2, 3), np.float32))
    with pytest.raises(InputError, match="expected input of shape"):
        scorer.score(np.zeros(scorer.input_dim, np.float32))
    with pytest.raises(InputError, match="nothing to score"):
        scorer.score(np.zeros((0, scorer.input_dim), np.float32))


def test_nan_and_wrong_kind(tabular_bundle: Path, digits_bundle: Path) -> None:
    rows = Scorer(tabular_bundle)
    x = np.zeros((1, rows.input_dim), np.float32)
    x[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        rows.score(x)
    with pytest.raises(InputError, match="scores rows, not images"):
        rows.score_images([b"png"])
    with pytest.raises(InputError, match="scores images, not rows"):
        Scorer(digits_bundle).score_rows([{"a": 1}])
    with pytest.raises(InputError, match="mc_samples must be >= 1"):
        Scorer(tabular_bundle, mc_samples=-1)


def test_row_dicts_and_columns_score_the_same(tabular_bundle: Path) -> None:
    from tests.conftest import make_tabular

    cols = make_tabular(20, seed=9)
    rows = [{k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in cols.items()}
            for i in range(20)]
    scorer = Scorer(tabular_bundle)
    np.testing.assert_array_equal(scorer.score_rows(rows).scores,
                                  scorer.score_rows(cols).scores)


def test_a_value_far_outside_its_column_scores_as_a_finite_extreme(
        tabular_bundle: Path) -> None:
    """1e39 in a column of unit scale overflowed float32 (the whole batch failed with 'NaN
    or infinite'), 1e25 scored inf (null in the service's JSON). Encoded values are clipped
    to MAX_STANDARD sd, so each scores finite and far above the threshold, by rows and by
    the CSV/Arrow encoder alike; a raw x that far out is refused by name."""
    import pyarrow as pa

    from tests.conftest import make_tabular

    scorer = Scorer(tabular_bundle)
    rows = make_tabular(4, seed=2)
    rows.pop("is_anomaly")
    rows["f0"] = np.array([1e39, 1e300, -1e25, 0.1])
    by_rows = scorer.score_rows(rows)
    assert np.isfinite(by_rows.scores).all() and by_rows.is_anomaly[:3].all()
    x, reasons = scorer.tabular.encode_arrow(pa.table(rows), from_csv=False)
    assert reasons == [None] * 4
    np.testing.assert_array_equal(scorer.score(x).scores, by_rows.scores)
    far = np.zeros((1, scorer.input_dim), np.float32)
    far[0, 0] = 1e30
    with pytest.raises(InputError, match=r"score of row 0 overflowed float32: its inputs "
                                         r"reach 1e\+30"):
        scorer.score(far)
    far[0, 0] = np.inf
    with pytest.raises(InputError, match=r"NaN or infinite values \(first at row 0, "
                                         r"feature 0\)"):
        scorer.score(far)
