"""What ``infer_schema`` makes of columns a real export holds: it leaves out what carries no
information (empty, constant, a copy), fills gaps, and refuses, naming the row, what it cannot
use."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.bundle import MISSING_CATEGORY, CategoricalColumn, NumericColumn
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


def test_missing_values_get_a_fill_from_the_fitted_rows() -> None:
    """Partly missing columns are normal data with gaps: numeric ones get the median of the
    values present (in the fitted rows) as their fill, categorical ones a missing category;
    a column without gaps gets neither, and an infinite value is still refused by row."""
    cols = _columns()
    cols["y"][[3, 9]] = np.nan
    cols["site"] = np.array(["a", "b", None, "a", ""] * 10, dtype=object)
    cols["code"] = np.array([0, 1, 2, np.nan, 1] * 10)  # an integer code with gaps
    cols["flag"] = np.array(["on", None] * 25, dtype=object)  # one value and gaps: constant
    cols["level"] = np.array([4.5, np.nan] * 25)
    fitted = np.arange(40)
    schema = infer_schema(cols, rows=fitted)
    assert schema.ignored[-2:] == ["flag", "level"]
    by_name = {c.name: c for c in schema.columns}
    y, x = by_name["y"], by_name["x"]
    assert isinstance(y, NumericColumn) and isinstance(x, NumericColumn)
    assert y.fill == pytest.approx(np.nanmedian(cols["y"][fitted])) and x.fill is None
    assert by_name["site"] == CategoricalColumn(name="site",
                                                categories=[MISSING_CATEGORY, "a", "b"])
    assert by_name["code"] == CategoricalColumn(name="code",
                                                categories=[MISSING_CATEGORY, "0", "1", "2"])
    cols["y"][[5, 8]] = np.inf
    with pytest.raises(InputError, match=r"column 'y' row 5: infinite value \(2 such rows\)"):
        infer_schema(cols)


def test_a_column_with_values_only_outside_the_fitted_rows_is_left_out() -> None:
    cols = _columns()
    cols["late"] = np.full(50, np.nan)
    cols["late"][45:] = 1.0 + np.arange(5)
    schema = infer_schema(cols, rows=np.arange(40))
    assert "late" in schema.ignored and "late" not in [c.name for c in schema.columns]


def test_a_table_of_empty_columns_has_nothing_to_train_on() -> None:
    with pytest.raises(InputError, match="no feature columns left"):
        infer_schema({"a": np.full(10, np.nan), "b": np.array([None] * 10, dtype=object)})


def test_thousands_separated_text_is_a_numeric_column() -> None:
    """An amount column exported as text with thousands separators is numeric (its values
    parsed, gaps filled); text of a few integer codes is categorical, as those codes are."""
    cols = _columns()
    cols["amount"] = np.array(["1,250.5", "980", None, "12,000", "-3,100"] * 10, dtype=object)
    cols["label"] = np.array(["1", "2"] * 25, dtype=object)
    by_name = {c.name: c for c in infer_schema(cols).columns}
    amount = by_name["amount"]
    assert isinstance(amount, NumericColumn)
    assert amount.fill == pytest.approx(np.median([1250.5, 980, 12000, -3100]))
    assert isinstance(by_name["label"], CategoricalColumn)
    assert infer_schema(cols, categorical=["amount"]).columns[-2].type == "categorical"


def test_date_and_time_columns_are_left_out() -> None:
    """Timestamps (as Arrow reads ISO text) and dates never recur in later rows: left out
    like a constant, unless named with ``categorical``. Durations recur: a measurement, in
    seconds (tests/training/test_durations.py)."""
    import datetime

    cols = _columns()
    cols["when"] = np.arange(50).astype("datetime64[s]")
    cols["day"] = np.array([datetime.date(2024, 1, 1 + i % 28) for i in range(50)], dtype=object)
    cols["took"] = np.arange(50).astype("timedelta64[ms]")
    cols["code"] = np.array(["a", "b"] * 25, dtype=object)
    schema = infer_schema(cols)
    assert [c.name for c in schema.columns] == ["x", "y", "took", "code"]
    assert schema.ignored[-2:] == ["when", "day"] and "took" not in schema.ignored
    forced = infer_schema(cols, categorical=["day"])
    assert "day" in [c.name for c in forced.columns]


def test_dates_written_as_text_are_left_out() -> None:
    """Dates in formats a CSV reader leaves as text (US, European, with month names, with a
    clock) are dates too: as categories, each day a level no later row has. Text that only
    looks dotted or dashed (versions, addresses, codes) is kept."""
    import datetime

    days = [datetime.date(2024, 1, 1) + datetime.timedelta(days=i // 2) for i in range(50)]
    cols = _columns()
    cols["us"] = np.array([d.strftime("%m/%d/%Y") for d in days], dtype=object)
    cols["eu"] = np.array([d.strftime("%d.%m.%Y 10:%M") for d in days], dtype=object)
    cols["named"] = np.array([d.strftime("%d %b %Y") for d in days], dtype=object)
    cols["clock"] = np.array([f"{i % 12 + 1}:{i % 60:02d} PM" for i in range(50)], dtype=object)
    cols["version"] = np.array([f"1.{i % 4}.{i % 3}" for i in range(50)], dtype=object)
    cols["ip"] = np.array([f"10.0.{i % 5}.{i % 7}" for i in range(50)], dtype=object)
    schema = infer_schema(cols)
    assert schema.ignored[-4:] == ["us", "eu", "named", "clock"]
    assert {"version", "ip"} <= {c.name for c in schema.columns}


def test_row_numbers_are_left_out() -> None:
    """A pandas index written by ``to_csv`` (0..n-1) or an id in shuffled order (distinct,
    consecutive integers) numbers the rows: left out. Integers that repeat or skip, too few
    rows, and a column named with ``categorical`` are kept."""
    rng = np.random.default_rng(1)
    cols = _columns()
    cols["index"] = np.arange(50)
    cols["id"] = rng.permutation(50).astype(np.float64) + 1000
    cols["skips"] = np.arange(50) * 2
    schema = infer_schema(cols)
    assert schema.ignored[-2:] == ["index", "id"] and "skips" in [c.name for c in schema.columns]
    assert "index" in [c.name for c in infer_schema(cols, categorical=["index"]).columns]
    few = {"x": rng.normal(size=19), "n": np.arange(19)}
    assert [c.name for c in infer_schema(few).columns] == ["x", "n"]


def test_ids_of_a_sample_of_rows_are_left_out_by_their_name() -> None:
    """The ids of a random split of a table are distinct but not consecutive: left out when
    the name says id (and a new row's id, beyond the range, would score as anomalous); the
    same numbers under another name, and ids that repeat, are kept."""
    rng = np.random.default_rng(2)
    cols = _columns()
    sample = np.sort(rng.choice(10_000, 50, replace=False))
    for name in ("customer_id", "CustomerID", "userId", "ID"):
        cols[name] = sample + len(name)
    cols["reading"] = sample * 1.0 + 0.5  # not integers: a measurement
    cols["amount"] = sample * 3
    cols["store_id"] = rng.integers(0, 5, 50)
    schema = infer_schema(cols)
    assert schema.ignored[-4:] == ["customer_id", "CustomerID", "userId", "ID"]
    assert {"reading", "amount", "store_id"} <= {c.name for c in schema.columns}


def test_text_of_numbers_with_markers_or_formats_is_a_numeric_column() -> None:
    """Columns a CSV reader leaves as text because of a marker it does not know (``?``, a
    blank, ``-``) or a format it does not read (``$1,234.50``, ``12.5%``): numeric, with a
    fill from the values that are there; plain numbers in text (a Parquet string column)
    too. A column of integer codes with a marker is still categorical, the marker its
    missing category (a word that is neither: test_a_numeric_column_with_stray_words_says_so)."""
    rng = np.random.default_rng(3)
    x = np.round(rng.lognormal(3, 1, 60), 2)
    marked = np.array([f"{v}" if i % 7 else ["?", " ", "-"][i % 3] for i, v in enumerate(x)],
                      dtype=object)
    cols = {"marked": marked,
            "price": np.array([f"${v * 100:,.2f}" for v in x], dtype=object),
            "rate": np.array([f"{v:.1f}%" for v in x], dtype=object),
            "plain": np.array([repr(v) for v in (-x).tolist()], dtype=object),
            "code": np.array([str(i % 4) if i % 9 else "?" for i in range(60)], dtype=object)}
    by_name = {c.name: c for c in infer_schema(cols).columns}
    marked_col = by_name["marked"]
    assert isinstance(marked_col, NumericColumn)
    assert marked_col.fill == pytest.approx(np.median(x[np.arange(60) % 7 != 0]))
    for name in ("price", "rate", "plain"):
        col = by_name[name]
        assert isinstance(col, NumericColumn) and col.fill is None, name
    assert by_name["price"].mean == pytest.approx(100 * np.median(x), rel=1e-6)
    assert by_name["rate"].mean == pytest.approx(
        np.median([float(f"{v:.1f}") for v in x]) / 100, rel=1e-6)
    code = by_name["code"]
    assert isinstance(code, CategoricalColumn)
    assert code.categories == [MISSING_CATEGORY, "0", "1", "2", "3"]


def test_a_numeric_column_with_stray_words_says_so() -> None:
    """A measurement with ``error`` typed into a few cells is not an identifier: the error
    names the stray values and the way out; a column of ids still reads as one."""
    rng = np.random.default_rng(5)
    values = [f"{v:.2f}" for v in rng.lognormal(3, 1, 300).tolist()]
    for i in range(7, 300, 40):
        values[i] = "error" if i % 80 == 7 else "n.a"
    cols = {"x": rng.normal(size=300), "b": np.array(values, dtype=object)}
    with pytest.raises(InputError, match=r"column 'b' holds numbers except 8 value\(s\) that "
                                         r"are not, such as \['error', 'n.a'\]: clean those "
                                         r"cells .* or pass --exclude b"):
        infer_schema(cols)
    small = {"x": cols["x"][:60], "b": cols["b"][:60]}  # 60 rows: few enough categories
    with pytest.raises(InputError, match=r"column 'b' holds numbers except 2 value"):
        infer_schema(small)
    codes = np.array([str(i % 4) if i % 9 else "other" for i in range(300)], dtype=object)
    schema = infer_schema({"x": cols["x"], "code": codes})
    assert schema.columns[1] == CategoricalColumn(name="code",
                                                  categories=["0", "1", "2", "3", "other"])
    cols["b"] = np.array([f"user{i % 250}@x.com" for i in range(300)], dtype=object)
    with pytest.raises(InputError, match="looks like an identifier or free text"):
        infer_schema(cols)


def test_text_identifiers_are_left_out_at_any_size() -> None:
    """A text column with each value once (names, e-mails, order ids) is left out in a
    small table too: as 60 categories it would make every later row's value unknown, so
    anomalous. Repeats, too few rows, and a column named with ``categorical`` are kept."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=60)
    ids = np.array([f"A-{1000 + 7 * i}" if i % 10 else None for i in range(60)], dtype=object)
    schema = infer_schema({"x": x, "order": ids, "email": np.array(
        [f"u{i}@x.com" for i in rng.permutation(60)], dtype=object)})
    assert [c.name for c in schema.columns] == ["x"]
    assert schema.ignored == ["order", "email"]
    again = ids.copy()
    again[1] = again[2]  # one value twice: a category that recurs
    assert [c.name for c in infer_schema({"x": x, "order": again}).columns] == ["x", "order"]
    forced = infer_schema({"x": x, "order": ids}, categorical=["order"])
    assert [c.name for c in forced.columns] == ["x", "order"]
    few = {"x": x[:19], "name": ids[1:20]}
    assert [c.name for c in infer_schema(few).columns] == ["x", "name"]
    for unread in ([f"{v:.1f}k" for v in x + 10], [f"{v:.2f} USD" for v in x + 10]):
        # mostly distinct numbers in a format no encoder reads: refused, not dropped as ids
        # (all distinct) nor made a category per value (a few repeats)
        with pytest.raises(InputError, match=r"column 'w' holds values such as \[.* that "
                                             r"look like numbers in a format not read"):
            infer_schema({"x": x, "w": np.array(unread, dtype=object)})


def test_addresses_and_versions_are_text_not_unread_numbers() -> None:
    """10.0.3.7 and 1.2.3 are not numbers in an unread format (that refusal is for 1.5k or
    5 USD): a column of distinct addresses is an identifier, left out; one that repeats a
    few dozen of them is a category."""
    cols = _columns()
    cols["host"] = np.array([f"10.0.{i // 7}.{i}" for i in range(50)], dtype=object)
    cols["server"] = np.array([f"10.1.{i % 5}.{i % 7}" for i in range(50)], dtype=object)
    schema = infer_schema(cols)
    assert "host" in schema.ignored
    assert [c.type for c in schema.columns if c.name == "server"] == ["categorical"]
