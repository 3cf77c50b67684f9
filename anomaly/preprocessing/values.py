"""What a raw table value means, in one place for every way rows come in (Python objects,
Arrow columns, CSV text): when it is missing, which category it is, and which number.

CSV text is read without type inference when scoring in batch (so that one stray word in a
numeric column rejects only its row), but training and the service's CSV bodies used Arrow's
inference: a column of ``1.0, 2.0`` became floats (categories "1", "2") and ``true``/``false``
booleans ("True", "False"). :func:`csv_category` maps CSV text to the category inference
would have produced, so that a CSV field scores the same whichever way it was read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from anomaly.errors import InputError

#: Up to this many values :func:`all_finite` sums them as Python floats (no numpy call
#: overhead); above it numpy's isfinite pass is the faster.
_SMALL = 512


def all_finite(a: np.ndarray) -> bool:
    """Whether every value of a float array is finite, in about 1 us for the few values of a
    single-row request (numpy's ``isfinite(a).all()`` costs twice that in call overhead).
    A sum of Python floats is finite exactly when every term is: NaN and infinities
    propagate, and where finite terms overflow the sum is inf and the exact pass decides;
    Python float arithmetic raises no floating-point warnings on the way."""
    if a.size <= _SMALL and math.isfinite(sum(a.ravel().tolist())):
        return True
    return bool(np.isfinite(a).all())


def is_missing(value: Any) -> bool:
    """A value that stands for nothing: None (a null), blank text, or a float NaN (how
    pandas and a numeric CSV column hold an empty cell; Arrow's CSV reader reads the text
    ``NaN`` as a null too). A column whose training rows had missing values scores them as
    training saw them (:attr:`NumericColumn.fill`, the :data:`MISSING_CATEGORY`); elsewhere
    a missing value makes its row a bad row."""
    return (value is None or (isinstance(value, str) and not value.strip())
            or (isinstance(value, float) and value != value))


def category_key(value: Any) -> str:
    """Categories are stored as strings; 3 and 3.0 and "3" are the same category."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def csv_category(text: str, known: frozenset[str]) -> str:
    """A CSV field of a categorical column -> the value to look up: itself when it is a known
    category (or blank), else the category Arrow's type inference would have read it as (a
    number or a boolean) when that one is known; anything else unchanged (unknown stays
    unknown)."""
    key = text.strip()
    if not key or key in known:
        return text
    candidate: str | None = None
    if key.lower() in ("true", "false"):
        candidate = "True" if key.lower() == "true" else "False"
    else:
        try:
            candidate = str(int(key))
        except ValueError:
            try:
                candidate = category_key(float(key))
            except ValueError:
                candidate = None
    return candidate if candidate is not None and candidate in known else text


#: A number written with ``,`` between groups of three digits and ``.`` as the decimal mark
#: (``12,345.67``, ``-1,000``), as spreadsheets and reports format amounts.
_GROUPED = re.compile(r"\s*[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?\s*")


def grouped_number(text: str) -> float | None:
    """The number a thousands-separated text stands for (``"12,345.67"`` -> 12345.67), or
    None when the text is not one. CSV readers (Arrow's among them) read such a field as
    text; every numeric path reads it through :func:`to_float`, which uses this."""
    if _GROUPED.fullmatch(text) is None:
        return None
    return float(text.replace(",", ""))


def as_grouped_numbers(values: np.ndarray) -> np.ndarray | None:
    """A text column as float64 (NaN where missing) when at least one value is a number
    written with thousands separators and all are numbers (read by :func:`to_float`, as the
    encoders will read them); None otherwise. Training uses it to tell an amount column
    exported as ``"1,234.50"`` from a categorical one."""
    if values.dtype.kind not in "OU":
        return None
    texts = values.tolist()
    if not any(isinstance(v, str) and grouped_number(v) is not None for v in texts):
        return None
    out, problems = to_float("", texts)
    missing = {i for i in problems if is_missing(texts[i])}
    return None if set(problems) - missing else out


def iter_values(values: Sequence[Any] | np.ndarray) -> Iterable[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else values


def to_float(name: str, values: Sequence[Any] | np.ndarray, fill: float | None = None
             ) -> tuple[np.ndarray, dict[int, str]]:
    """Values -> float64 array plus {row: reason} for missing, non-numeric or non-finite ones
    (their entries are NaN). With a ``fill`` (the column's training median, for a column
    whose training rows had missing values), missing values (None, blank, NaN) become
    ``fill`` instead of problems; infinities and text stay problems."""
    problems: dict[int, str] = {}
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "fiub":
        out = arr.astype(np.float64)
        if fill is not None:
            out[np.isnan(out)] = fill
    else:
        out = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(iter_values(values)):
            if is_missing(value):
                if fill is not None:
                    out[i] = fill
                    continue
                problems[i] = f"column '{name}': value is missing"
                out[i] = np.nan
                continue
            try:
                out[i] = float(value)
            except (TypeError, ValueError, OverflowError):  # OverflowError: int beyond float
                number = grouped_number(value) if isinstance(value, str) else None
                if number is None:
                    problems[i] = f"column '{name}': {value!r} is not a number"
                    out[i] = np.nan
                    continue
                out[i] = number
            if fill is not None and out[i] != out[i]:  # the text "nan", as Arrow reads it
                out[i] = fill
    for i in np.flatnonzero(~np.isfinite(out)).tolist():
        problems.setdefault(i, f"column '{name}': value is {out[i]} (NaN or infinite)")
    return out, problems


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """List of row dicts -> dict of column lists (missing keys become None)."""
    if not rows:
        raise InputError("no rows given: send at least one row")
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(f"row {i} is not an object of column: value pairs")
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}
