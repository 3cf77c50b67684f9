"""``train_tabular`` takes a pandas DataFrame as it takes {column: array}: the same schema,
the same training data (fingerprint), the same scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly.bundle import MISSING_CATEGORY, load_bundle
from anomaly.errors import InputError
from anomaly.inference import Scorer
from tests.conftest import make_tabular
from training.pipeline import tabular_config, train_tabular

TINY = {"epochs": 3, "hidden": (16,), "latent_dim": 2, "mc_samples": 4, "progress": False,
        "target_fpr": 0.1}


def test_a_frame_trains_the_bundle_its_columns_would(tmp_path: Path) -> None:
    cols = make_tabular(300, seed=2)
    frame = pd.DataFrame(cols).astype({"color": "category", "f5": "Float64"})
    frame.index = pd.RangeIndex(1000, 1300)  # the index is not data
    a = train_tabular(cols, tmp_path / "dict", "m", tabular_config(**TINY),
                      exclude=["is_anomaly"])
    b = train_tabular(frame, tmp_path / "frame", "m", tabular_config(**TINY),
                      exclude=["is_anomaly"])
    assert b.manifest.input == a.manifest.input
    assert b.manifest.training.data_fingerprint == a.manifest.training.data_fingerprint
    scored = [Scorer(r.path).score_rows(cols).scores for r in (a, b)]
    np.testing.assert_allclose(scored[1], scored[0], rtol=1e-5)
    kinds = {c.name: c.type for c in load_bundle(b.path).manifest.input.columns}
    assert kinds["color"] == "categorical" and kinds["f5"] == "numeric"
    assert "is_anomaly" not in kinds


def test_missing_values_in_a_training_frame_are_filled_as_when_scoring(tmp_path: Path) -> None:
    """Gaps in a training frame (pd.NA, None) are normal data: the bundle fills them with the
    column's median (numeric) or a missing category, and scoring fills them the same way, so
    a row with a gap scores as that row with the fill written in."""
    cols = make_tabular(300, seed=2)
    cols.pop("is_anomaly")
    frame = pd.DataFrame(cols).astype({"f1": "Float64"})
    frame.loc[[7, 40, 41], "f1"] = pd.NA
    frame.loc[[3, 90], "color"] = None
    report = train_tabular(frame, tmp_path / "m", "m", tabular_config(**TINY))
    by_name = {c.name: c for c in report.manifest.input.columns}
    fill = by_name["f1"].fill  # type: ignore[union-attr]
    assert fill == pytest.approx(float(np.median(cols["f1"][plan_rows(300)])), rel=0.05)
    assert by_name["color"].categories[0] == MISSING_CATEGORY  # type: ignore[union-attr]
    scorer = Scorer(report.path)
    gaps = frame.iloc[[7, 3]].reset_index(drop=True)
    filled = gaps.astype({"f1": "float64"}).copy()
    filled.loc[0, "f1"] = fill
    scored = scorer.score_frame(gaps)
    assert np.isfinite(scored["score"]).all()
    np.testing.assert_allclose(scored["score"].iloc[0], scorer.score_frame(filled)["score"].iloc[0],
                               rtol=1e-6)
    with pytest.raises(InputError, match=r"column 'f2': value is missing"):  # no gaps in f2
        scorer.score_rows([{**gaps.iloc[0].to_dict(), "f1": 0.0, "f2": None}])


def plan_rows(n: int) -> np.ndarray:
    """The rows ``train_tabular`` fits on with TINY's settings (the schema's rows)."""
    from training.splits import plan_splits

    config = tabular_config(**TINY)
    plan = plan_splits(n, config.holdout_fraction, config.target_fpr, config.seed)
    return np.union1d(plan.train, plan.val)


@pytest.mark.parametrize("split", ["cal", "train"])
def test_an_infinite_value_is_named_by_its_own_row(tmp_path: Path, split: str) -> None:
    """The schema is learnt on the fitted rows only, but an infinite value anywhere is
    reported with its row number in the data the user gave, whichever split the row fell in."""
    from training.splits import plan_splits

    config = tabular_config(**TINY)
    cols = make_tabular(300, seed=2)
    plan = plan_splits(300, config.holdout_fraction, config.target_fpr, config.seed)
    row = int((plan.cal if split == "cal" else plan.train)[-1])
    cols["f1"] = cols["f1"].astype(np.float64)
    cols["f1"][row] = -np.inf
    with pytest.raises(InputError, match=rf"column 'f1' row {row}: infinite value "
                                         r"\(1 such rows\)"):
        train_tabular(cols, tmp_path / "m", "m", config)
