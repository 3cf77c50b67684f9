"""What a raw table value means, in one place for every way rows come in (Python objects,
Arrow columns, CSV text): when it is missing, which category it is, and which number.

CSV text is read without type inference when scoring in batch (so that one stray word in a
numeric column rejects only its row), but training and the service's CSV bodies used Arrow's
inference: a column of ``1.0, 2.0`` became floats (categories "1", "2") and ``true``/``false``
booleans ("True", "False"). :func:`csv_category` maps CSV text to the category inference
would have produced, so that a CSV field scores the same whichever way it was read.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from anomaly.errors import InputError, quoted

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


#: Text that stands for a missing value: Arrow's CSV null markers (the spreadsheet and pandas
#: spellings of NA and NaN) plus the markers of other exports: ``?`` (the UCI repository's),
#: ``-`` and ``--`` (report tables), ``None`` (Python's ``str(None)``). Training reads CSV
#: with these as nulls (:func:`anomaly.batch.sources.read_table`), and every encoder asks
#: :func:`is_missing`, so a marker means the same on every way in.
MISSING_TOKENS = frozenset({
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null",  # pyarrow.csv's default null_values
    "?", "-", "--", "None",
})


def is_missing(value: Any) -> bool:
    """A value that stands for nothing: None (a null), blank text, a missing marker
    (:data:`MISSING_TOKENS`, surrounding blanks ignored) or a float NaN (how pandas and a
    numeric CSV column hold an empty cell). A column whose training rows had missing values
    scores them as training saw them (:attr:`NumericColumn.fill`, the
    :data:`MISSING_CATEGORY`); elsewhere a missing value makes its row a bad row."""
    if isinstance(value, str):
        key = value.strip()
        return not key or key in MISSING_TOKENS
    return value is None or (isinstance(value, float) and value != value)


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


#: A number formatted for people: ``,`` between groups of three digits (``.`` is the decimal
#: mark), a currency sign in front, a per cent sign behind: ``12,345.67``, ``-1,000``,
#: ``$1,200.00``, ``-€5``, ``12.5%``, as spreadsheets and reports write amounts and rates.
_FORMATTED = re.compile(
    r"\s*(?P<sign>[+-]?)\s*(?P<currency>[$€£¥]?)\s*(?P<sign2>[+-]?)"
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)\s*(?P<percent>%?)\s*")


#: The characters a formatted number has and a plain one has not.
_FORMAT_MARKS = frozenset(",$€£¥%(\u2212:P")  # ':' and 'P': durations (below)

#: A duration as pandas writes a timedelta to CSV (``0 days 00:05:00``, ``-1 days
#: +23:59:58.500000``: minus a day plus the clock) ...
_PANDAS_DURATION = re.compile(r"(?P<neg>-)?(?P<days>\d+) days? (?P<clock_sign>[+-])?"
                              r"(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)")
#: ... or as ISO 8601 writes one with fixed-length parts (``PT5M30S``, ``P2DT3H``, ``P1W``;
#: years and months are left out: their length in seconds depends on the calendar).
_ISO_DURATION = re.compile(
    r"(?P<neg>-)?P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?")


#: A bare clock (``00:05:00``): a time of day as much as a duration, so not read as either.
_BARE_CLOCK = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")


def _hint(value: Any) -> str:
    """What to send instead of a value that is not a number, where there is a likely
    reading: a bare clock meant as a duration."""
    if isinstance(value, str) and _BARE_CLOCK.fullmatch(value.strip()):
        return " (a clock: send a duration as seconds, or as ISO 8601 such as PT1H30M)"
    return ""


def duration_text(text: str) -> float | None:
    """Seconds of a duration written as text in pandas' or ISO 8601's form, else None (a
    clock such as ``00:05:00`` alone is not one: it reads as a time of day too)."""
    match = _PANDAS_DURATION.fullmatch(text)
    if match is not None:
        clock = int(match["h"]) * 3600 + int(match["m"]) * 60 + float(match["s"])
        days = -int(match["days"]) if match["neg"] else int(match["days"])
        return days * 86400.0 + (-clock if match["clock_sign"] == "-" else clock)
    match = _ISO_DURATION.fullmatch(text)
    if match is None or not any(match[k] for k in "wdhms") or text.endswith("T"):
        return None
    total = sum(float(match[k] or 0) * unit for k, unit in
                (("w", 604800.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)))
    return -total if match["neg"] else total
#: The minus sign of typeset text (U+2212), as word processors and web pages write it.
_MINUS = "\u2212"


def formatted_number(text: str) -> float | None:
    """The number a formatted text stands for (``"12,345.67"`` -> 12345.67, ``"$1,200"`` ->
    1200.0, ``"12.5%"`` -> 0.125, accounting's ``"(1,200.00)"`` -> -1200.0, a typeset
    minus ``"\u22125"`` -> -5.0, a duration ``"0 days 00:05:00"`` or ``"PT5M"`` -> 300.0
    seconds, :func:`duration_text`), or None when the text is not one. CSV readers (Arrow's
    among them) read such a field as text; every numeric path reads it through
    :func:`to_float`, which uses this. A per cent is read as the fraction it means; the scale
    of a column does not matter to the model, which standardises it."""
    text = text.strip().replace(_MINUS, "-")
    if text.startswith("(") and text.endswith(")"):  # accounting's negative: (1,200.00)
        inner = text[1:-1]
        value = None if inner.lstrip()[:1] in ("+", "-") else formatted_number(inner)
        return None if value is None or value < 0 else -value
    match = _FORMATTED.fullmatch(text)
    if match is None:  # a duration has a ':' or a 'P': other text skips both patterns
        return duration_text(text) if ":" in text or "P" in text else None
    sign, currency, sign2, number, percent = match.group(
        "sign", "currency", "sign2", "number", "percent")
    if (sign and sign2) or (sign2 and not currency) or (currency and percent):
        return None
    value = float(number.replace(",", ""))
    value = -value if "-" in (sign, sign2) else value
    return value / 100.0 if percent else value


class TextNumbers(NamedTuple):
    """A text column read as numbers by :func:`as_numbers`."""

    values: np.ndarray  # (n,) float64, NaN where missing or not a number
    formatted: bool  # some value had a group, currency or per cent sign ("$1,200", "12%")
    stray: list[int]  # rows whose value is present but not a number ("error", "n.a")
    present: int  # rows with a value (not missing)


def as_numbers(values: np.ndarray) -> TextNumbers | None:
    """A text column read as numbers, each value as the encoders will read it
    (:func:`to_float`), in one pass; None for a column that is not text. A column with no
    ``stray`` rows and at least one number is a column of numbers: what training makes of
    the columns a CSV reader left as text because of a marker it does not know (``" "``) or
    a format it does not read (``"$1,234.50"``), and of Parquet columns of numbers stored as
    strings; a few stray rows are words typed into a measurement."""
    if values.dtype.kind not in "OU":
        return None
    texts = values.tolist()
    if not all(isinstance(v, str) or v is None for v in texts):
        return None
    out, problems = to_float("", texts)
    stray = [i for i in problems if not is_missing(texts[i])]
    present = len(texts) - len(problems) + len(stray)
    # every value parsed: those with a group, currency or per cent sign were formatted
    formatted = not stray and any(v is not None and not _FORMAT_MARKS.isdisjoint(v)
                                  for v in texts)
    return TextNumbers(out, formatted, stray, present)


def iter_values(values: Sequence[Any] | np.ndarray) -> Iterable[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else values


def seconds(arr: np.ndarray) -> np.ndarray:
    """Durations -> float64 seconds (NaN where missing): numpy timedelta64 in any unit, or
    an object array of ``datetime.timedelta`` (None where missing). A duration (a call's
    length, a time to resolve) is a measurement that recurs, unlike a date, so it is read
    as a number, in seconds whatever its unit, by training and by every scoring path."""
    if arr.dtype.kind == "m":
        return arr / np.timedelta64(1, "s")  # NaT -> NaN
    return np.array([np.nan if is_missing(v) else v.total_seconds() for v in arr.tolist()],
                    dtype=np.float64)


def as_durations(arr: np.ndarray) -> np.ndarray | None:
    """:func:`seconds` of a column of durations; None for any other column."""
    if arr.dtype.kind == "m":
        return seconds(arr)
    if arr.dtype.kind != "O":
        return None
    present = [v for v in arr.tolist() if not is_missing(v)]
    if present and all(isinstance(v, datetime.timedelta) for v in present):
        return seconds(arr)
    return None


def to_float(name: str, values: Sequence[Any] | np.ndarray, fill: float | None = None
             ) -> tuple[np.ndarray, dict[int, str]]:
    """Values -> float64 array plus {row: reason} for missing, non-numeric or non-finite ones
    (their entries are NaN). Numbers are Python's ``float`` of the value, or for text it does
    not read, :func:`formatted_number`'s. With a ``fill`` (the column's training median, for
    a column whose training rows had missing values), missing values (:func:`is_missing`)
    become ``fill`` instead of problems; infinities and other text stay problems."""
    problems: dict[int, str] = {}
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind == "m":
        out = seconds(arr)  # NaT -> NaN
        if fill is None:
            for i in np.flatnonzero(np.isnat(arr)).tolist():
                problems[i] = f"column '{name}': value is missing"
        else:
            out[np.isnan(out)] = fill
    elif arr is not None and arr.dtype.kind in "fiub":
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
            if isinstance(value, datetime.timedelta):
                out[i] = value.total_seconds()
                continue
            try:
                out[i] = float(value)
            except (TypeError, ValueError, OverflowError):  # OverflowError: int beyond float
                number = formatted_number(value) if isinstance(value, str) else None
                if number is None:
                    problems[i] = (f"column '{name}': {quoted(value)} is not a number"
                                   f"{_hint(value)}")
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
