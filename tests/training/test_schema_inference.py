"""What ``infer_schema`` makes of columns a real export holds: it leaves out what carries no
information (empty, constant, a copy) and refuses, naming the row, what it cannot use."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.bundle import NumericColumn
from anomaly.errors import InputError
from training.tabular import infer_schema


def _columns() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    return {"x": x, "nan_only": np.full(50, np.nan), "blank": np.array([""] * 50, dtype=object),
            "null": np.array([None] * 50, dtype=object), "same": np.ones(50), "x_again": x.copy(),
            "y": rng.normal(size=50)}


def test_empty_constant_and_copied_columns_are_left_out() -> None:
    schema = infer_schema(_columns())
    assert [c.name for c in schema.columns] == ["x", "y"]
    assert all(isinstance(c, NumericColumn) for c in schema.columns)
    assert schema.ignored == ["nan_only", "blank", "null", "same", "x_again"]


def test_a_partly_missing_column_is_still_refused_by_row() -> None:
    cols = _columns()
    cols["y"][[3, 9]] = np.nan
    with pytest.raises(InputError, match=r"column 'y' row 3: missing, NaN or infinite value "
                                         r"\(2 such rows\)"):
        infer_schema(cols)


def test_a_table_of_empty_columns_has_nothing_to_train_on() -> None:
    with pytest.raises(InputError, match="no feature columns left"):
        infer_schema({"a": np.full(10, np.nan), "b": np.array([None] * 10, dtype=object)})
