"""The tabular encoder's three ways in (row dicts, columns, Arrow tables read from CSV text)
give bit-identical x and the same rejection reasons for the same values."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from anomaly.bundle import CategoricalColumn, NumericColumn, TabularInput
from anomaly.errors import InputError
from anomaly.preprocessing import TabularPreprocessor, rows_to_columns
from tests.conftest import make_tabular

SCHEMA = TabularInput(columns=[
    NumericColumn(name="t", mean=20.5, std=3.25),
    CategoricalColumn(name="color", categories=["blue", "red"]),
    NumericColumn(name="p", mean=-1.0, std=0.1),
    CategoricalColumn(name="code", categories=["1", "2", "30", "True"]),
])


def _library(prep: TabularPreprocessor, rows: list[Any]) -> np.ndarray:
    return prep.transform(rows_to_columns(rows), strict=True).x


def _from_csv(prep: TabularPreprocessor, text: str) -> tuple[np.ndarray, list[str | None]]:
    """As batch scoring and the service's CSV bodies read CSV: every field as bytes."""
    table = pacsv.read_csv(io.BytesIO(text.encode()), convert_options=pacsv.ConvertOptions(
        column_types=dict.fromkeys(prep.column_names, pa.binary()),
        strings_can_be_null=True))
    return prep.encode_arrow(table, from_csv=True)


def test_row_dicts_identical_to_columns_on_mixed_rows() -> None:
    prep = TabularPreprocessor(SCHEMA)
    rows = [
        {"t": 21.0, "color": "red", "p": -1.05, "code": "2"},
        {"t": "19.25", "color": "green", "p": 3, "code": 30.0},  # unknown category, 30.0 = "30"
        {"t": True, "color": " blue ", "p": -0.999999, "code": 1, "extra": "ignored"},
        {"t": 1e30, "color": "red", "p": "-1e-3", "code": "7"},
        {"t": " 1_000 ", "color": "red", "p": "+.5", "code": 2},
    ]
    np.testing.assert_array_equal(prep.encode_rows(rows), _library(prep, rows))


def test_csv_text_identical_to_typed_values() -> None:
    """CSV fields are read as text; numbers and booleans in a categorical column mean the
    category type inference would have made of them ("2.0" is "2", "true" is "True")."""
    prep = TabularPreprocessor(SCHEMA)
    text = ("t,color,p,code\n21.0,red,-1.05,2.0\n19.25,green,3,30\n"
            "-0.5, blue ,-0.999999,true\n1e30,red,-1e-3,7\n")
    rows = [{"t": 21.0, "color": "red", "p": -1.05, "code": 2.0},
            {"t": 19.25, "color": "green", "p": 3, "code": 30},
            {"t": -0.5, "color": " blue ", "p": -0.999999, "code": True},
            {"t": 1e30, "color": "red", "p": -1e-3, "code": "7"}]
    x, reasons = _from_csv(prep, text)
    assert reasons == [None] * 4
    np.testing.assert_array_equal(x, prep.encode_rows(rows))


def test_csv_rejects_only_the_bad_rows_with_the_library_reasons() -> None:
    prep = TabularPreprocessor(SCHEMA)
    text = "t,color,p,code\n1,red,1,1\nwarm,red,1,1\n1,,1,1\n1,red,inf,1\n2,blue,2,2\n"
    x, reasons = _from_csv(prep, text)
    cols = {"t": ["1", "warm", "1", "1", "2"], "color": ["red", "red", None, "red", "blue"],
            "p": ["1", "1", "1", "inf", "2"], "code": ["1"] * 4 + ["2"]}
    library = prep.transform(cols, strict=False)
    assert [i for i, r in enumerate(reasons) if r] == [1, 2, 3]
    assert {i: r for i, r in enumerate(reasons) if r} == library.rejects
    np.testing.assert_array_equal(x[[0, 4]], library.x)
    assert not x[[1, 2, 3]].any()  # rejected rows carry zeros, never half-encoded values


def test_invalid_utf8_in_a_categorical_column_is_a_reject() -> None:
    prep = TabularPreprocessor(SCHEMA)
    table = pa.table({"t": pa.array([b"1", b"2"]), "color": pa.array([b"red", b"r\xffd"]),
                      "p": pa.array([b"1", b"1"]), "code": pa.array([b"1", b"1"])})
    _, reasons = prep.encode_arrow(table, from_csv=True)
    assert reasons[0] is None and "not valid UTF-8" in str(reasons[1])


def test_identical_on_real_rows(tabular_bundle: Path) -> None:
    from anomaly.inference import Scorer

    prep = Scorer(tabular_bundle).tabular
    cols = make_tabular(300, seed=5)
    rows = [{k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in cols.items()}
            for i in range(300)]
    via_rows = prep.encode_rows(rows)
    np.testing.assert_array_equal(via_rows, prep.transform(cols).x)
    buf = io.BytesIO()
    pacsv.write_csv(pa.table({k: v for k, v in cols.items()}), buf)
    x, reasons = _from_csv(prep, buf.getvalue().decode())
    assert reasons == [None] * 300
    np.testing.assert_array_equal(x, via_rows)


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
    _assert_same_error(TabularPreprocessor(SCHEMA), rows)


def _assert_same_error(prep: TabularPreprocessor, rows: list[Any]) -> None:
    with pytest.raises(InputError) as library:
        _library(prep, rows)
    with pytest.raises(InputError) as ours:
        prep.encode_rows(rows)
    assert str(ours.value) == str(library.value)


NUMERIC_ONLY = TabularInput(columns=[NumericColumn(name="a", mean=3.0, std=2.0),
                                     NumericColumn(name="b", mean=-1.0, std=0.5)])
ONE_COLUMN = TabularInput(columns=[NumericColumn(name="a", mean=3.0, std=2.0)])


@pytest.mark.parametrize("schema", [NUMERIC_ONLY, ONE_COLUMN], ids=["two", "one"])
@pytest.mark.parametrize("rows", [
    [{"a": 1.5, "b": 2.0}],
    [{"a": 1, "b": "2.5"}, {"a": -7.25, "b": 0, "extra": "ignored"}],
])
def test_numeric_only_rows_identical_to_columns(schema: TabularInput,
                                                rows: list[dict[str, Any]]) -> None:
    """The all-numeric short way (one tuple per row, one finiteness sum) gives the library's
    x, bit for bit."""
    prep = TabularPreprocessor(schema)
    x = prep.encode_rows(rows)
    assert x.dtype == np.float32 and x.shape == (len(rows), len(schema.columns))
    np.testing.assert_array_equal(x, _library(prep, rows))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_finite_values_whose_sum_overflows_are_encoded_without_warnings() -> None:
    """The finiteness check sums the values; where finite values overflow that sum the rows
    take the long way and still encode, with no floating-point warning on the way."""
    prep = TabularPreprocessor(TabularInput(columns=[
        NumericColumn(name="a", mean=0.0, std=1e300), NumericColumn(name="b", mean=0.0,
                                                                     std=1e300)]))
    rows = [{"a": 1e308, "b": 1e308}, {"a": -1e308, "b": 1e308}]
    x = prep.encode_rows(rows)
    np.testing.assert_allclose(x, [[1e8, 1e8], [-1e8, 1e8]], rtol=1e-6)
    np.testing.assert_array_equal(x, _library(prep, rows))


@pytest.mark.parametrize("schema", [NUMERIC_ONLY, ONE_COLUMN], ids=["two", "one"])
@pytest.mark.parametrize("rows", [
    [{"b": 1.0}],
    [{"a": None, "b": 1.0}],
    [{"a": float("inf"), "b": 1.0}],
    [{"a": "warm", "b": 1.0}],
    [[1.0, 2.0]],
    ["a=1"],
])
def test_numeric_only_bad_rows_raise_the_library_error(schema: TabularInput,
                                                       rows: list[Any]) -> None:
    _assert_same_error(TabularPreprocessor(schema), rows)
