"""The service's row encoder gives bit-identical x to the library's columnar transform, and the
library's own error messages for bad rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from anomaly.errors import InputError
from anomaly.preprocessing import TabularPreprocessor, rows_to_columns
from anomaly.schema import CategoricalColumn, NumericColumn, TabularInput
from service.rows import RowEncoder
from tests.service.conftest import TrainedBundles

SCHEMA = TabularInput(columns=[
    NumericColumn(name="t", mean=20.5, std=3.25),
    CategoricalColumn(name="color", categories=["blue", "red"]),
    NumericColumn(name="p", mean=-1.0, std=0.1),
    CategoricalColumn(name="code", categories=["1", "2", "30"]),
])


def _library(prep: TabularPreprocessor, rows: list[Any]) -> np.ndarray:
    return prep.transform(rows_to_columns(rows), strict=True).x


def test_identical_to_the_library_on_mixed_rows() -> None:
    prep = TabularPreprocessor(SCHEMA)
    rows = [
        {"t": 21.0, "color": "red", "p": -1.05, "code": "2"},
        {"t": "19.25", "color": "green", "p": 3, "code": 30.0},  # unknown category, 30.0 = "30"
        {"t": True, "color": " blue ", "p": -0.999999, "code": 1, "extra": "ignored"},
        {"t": 1e30, "color": "red", "p": "-1e-3", "code": "7"},
        {"t": " 1_000 ", "color": "red", "p": "+.5", "code": 2},
    ]
    np.testing.assert_array_equal(RowEncoder(prep).encode(rows), _library(prep, rows))


def test_identical_to_the_library_on_real_rows(bundles: TrainedBundles) -> None:
    from anomaly.scorer import Scorer

    prep = Scorer(bundles.cancer).preprocessor
    assert isinstance(prep, TabularPreprocessor)
    rows = bundles.cancer_rows
    np.testing.assert_array_equal(RowEncoder(prep).encode(rows), _library(prep, rows))


@pytest.mark.parametrize("rows", [
    [],
    [{"t": 1.0, "color": "red", "p": 1.0}],  # a column missing everywhere
    [{"t": 1.0, "color": "red", "p": 1.0, "code": "1"}, {"t": 2.0, "color": "red", "p": 1.0}],
    [{"t": "warm", "color": "red", "p": 1.0, "code": "1"}],
    [{"t": float("nan"), "color": "red", "p": 1.0, "code": "1"}],
    [{"t": 1.0, "color": " ", "p": 1.0, "code": "1"}],
    [{"t": [1], "color": "red", "p": 1.0, "code": "1"}],
    [{"t": "0x10", "color": "red", "p": 1.0, "code": "1"}],
    [{"t": "inf", "color": "red", "p": 1.0, "code": "1"}],
    [{"t": 10**400, "color": "red", "p": 1.0, "code": "1"}],
    [{"t": 1.0, "color": "red", "p": 1.0, "code": None}],
    [["not", "a", "row"]],
])
def test_bad_rows_raise_the_library_error(rows: list[Any]) -> None:
    prep = TabularPreprocessor(SCHEMA)
    with pytest.raises(InputError) as library:
        _library(prep, rows)
    with pytest.raises(InputError) as ours:
        RowEncoder(prep).encode(rows)
    assert str(ours.value) == str(library.value)
