"""Messages that say what to do next: near-miss column names are pointed out."""

from __future__ import annotations

import pytest

from anomaly.bundle import CategoricalColumn, NumericColumn, TabularInput
from anomaly.errors import InputError, near_names
from anomaly.preprocessing import TabularPreprocessor


def test_names_that_differ_only_in_spaces_or_case_are_pointed_out() -> None:
    hint = near_names([" b", "Color", "gone"], ["a", "b", "color"])
    assert hint == (" (there is 'b' for ' b', 'color' for 'Color': names must match exactly, "
                    "spaces and case included; rename the columns or retrain)")
    assert near_names(["gone"], ["a", "b"]) == ""
    many = near_names([f"c{i} " for i in range(5)], [f"c{i}" for i in range(5)])
    assert many.endswith("and 2 more: names must match exactly, spaces and case included; "
                         "rename the columns or retrain)")


def test_rows_missing_a_column_by_a_space_say_so() -> None:
    """A header written 'a, b' trains columns named ' b'; rows keyed 'b' miss it."""
    prep = TabularPreprocessor(TabularInput(columns=[
        NumericColumn(name="a", mean=0.0, std=1.0), NumericColumn(name=" b", mean=0.0, std=1.0),
        CategoricalColumn(name=" color", categories=["red"])]))
    with pytest.raises(InputError, match=r"missing column\(s\) \[' b', ' color'\] \(there is "
                                         r"'b' for ' b', 'color' for ' color'"):
        prep.transform({"a": [1.0], "b": [2.0], "color": ["red"]})


def test_quoted_cuts_long_values_and_says_how_long() -> None:
    from anomaly.errors import QUOTE_LIMIT, quoted

    assert quoted("age") == "'age'"
    assert quoted(3.5) == "3.5"
    text = quoted("z" * 100_000)
    assert text == "'" + "z" * (QUOTE_LIMIT - 1) + "... (100,002 characters)"


def test_listed_reads_as_python_and_cuts_each_name() -> None:
    from anomaly.errors import listed

    assert listed(["a", "b'c"]) == repr(["a", "b'c"])
    assert listed([]) == "[]"
    assert listed([f"c{i}" for i in range(12)]) == repr([f"c{i}" for i in range(10)]) + \
        " and 2 more"
    long = listed(["x" * 5000, "y"])
    assert long.endswith("... (5,002 characters), 'y']") and len(long) < 150
