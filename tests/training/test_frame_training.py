"""``train_tabular`` takes a pandas DataFrame as it takes {column: array}: the same schema,
the same training data (fingerprint), the same scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly.bundle import load_bundle
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


def test_missing_values_in_a_training_frame_are_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame(make_tabular(300, seed=2)).astype({"f1": "Float64"})
    frame.loc[7, "f1"] = pd.NA
    with pytest.raises(InputError, match=r"column 'f1' row \d+: missing, NaN or infinite"):
        train_tabular(frame, tmp_path / "m", "m", tabular_config(**TINY))


@pytest.mark.parametrize("split", ["cal", "train"])
def test_a_missing_value_is_named_by_its_own_row(tmp_path: Path, split: str) -> None:
    """The schema is learnt on the fitted rows only, but a missing value anywhere is reported
    with its row number in the data the user gave, whichever split the row fell in."""
    from training.splits import plan_splits

    config = tabular_config(**TINY)
    cols = make_tabular(300, seed=2)
    plan = plan_splits(300, config.holdout_fraction, config.target_fpr, config.seed)
    row = int((plan.cal if split == "cal" else plan.train)[-1])
    cols["f1"] = cols["f1"].astype(np.float64)
    cols["f1"][row] = np.nan
    with pytest.raises(InputError, match=rf"column 'f1' row {row}: missing, NaN or infinite "
                                         r"value \(1 such rows\)"):
        train_tabular(cols, tmp_path / "m", "m", config)
