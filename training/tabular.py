"""Infer a tabular input schema (column types, scaling, categories) from normal training rows."""

from __future__ import annotations

import datetime
import re
from collections.abc import Collection, Mapping
from typing import NamedTuple

import numpy as np

from anomaly.bundle import (
    MISSING_CATEGORY,
    CategoricalColumn,
    Column,
    NumericColumn,
    TabularInput,
)
from anomaly.errors import InputError, listed
from anomaly.preprocessing import (
    TextNumbers,
    as_durations,
    as_numbers,
    category_key,
    is_missing,
)
from training.likelihood import Block

#: A string column with more distinct values than this (and mostly unique) is an identifier.
MAX_CATEGORIES = 200
#: A numeric column whose training values are all integers with at most this many distinct
#: values is a code, not a measurement: it is modelled as categorical. Measured on the ODDS
#: tables (benchmarks/README.md): lympho 0.856 -> 0.997 AUROC, no table worse.
MAX_CODE_LEVELS = 10


def infer_schema(columns: Mapping[str, np.ndarray], categorical: Collection[str] = (),
                 exclude: Collection[str] = (), rows: np.ndarray | None = None) -> TabularInput:
    """The input schema from normal training rows, decided on these rows alone.

    ``rows`` (indices) restricts the decision to those rows (the ones the model is fitted on,
    never calibration rows), while every row is still checked for infinite values, so that an
    error names the row by its number in ``columns``. Numeric columns are centred on their
    median and scaled by a robust spread (:func:`_scale`); integer columns with at most
    :data:`MAX_CODE_LEVELS` distinct values, non-numeric columns and the names in
    ``categorical`` become categorical over the values seen. Columns that carry nothing (a
    constant, or no value in any row) or nothing new (an exact copy of an earlier column)
    are left out and listed in ``ignored`` with the excluded ones, so that scoring input may
    still hold them; so are date and time columns (:func:`is_temporal`), row numbers
    (:func:`is_row_number`) and text identifiers (:func:`is_identifier`). A duplicated column
    would count its value twice in the score; a constant one has no variance to learn. A text
    column whose values are all numbers or missing (:func:`~anomaly.preprocessing.as_numbers`:
    a marker the CSV reader did not know, amounts written ``"$1,234.50"``, rates ``"12%"``) is
    a column of those numbers.

    Missing values (null, blank, a marker such as ``NA`` or ``?``, NaN) in some rows of a
    column are part of the normal data: a numeric column gets a ``fill``, the median of its
    values, which every encoder puts in for a missing value, and a categorical one the
    category :data:`MISSING_CATEGORY`. (What PyOD users do by hand with a median imputer,
    here stored in the bundle so that scoring fills the same way.) A column with no missing
    value in training keeps refusing them when scoring: there a missing value is a broken
    row, not a normal one."""
    unknown = (set(categorical) | set(exclude)) - set(columns)
    if unknown:
        raise InputError(f"column(s) {sorted(unknown)} named in --categorical/--exclude are not "
                         f"in the data; its columns are {listed(list(columns))}")
    out: list[Column] = []
    ignored: list[str] = []
    seen: dict[bytes, str] = {}  # content fingerprint -> first column with it
    for name, values in columns.items():
        if name in exclude:
            ignored.append(name)
            continue
        arr = np.asarray(values)
        durations = None if name in categorical else as_durations(arr)
        if durations is not None:
            arr = durations  # seconds: a measurement, which the encoders read as seconds too
        # numbers a reader left as text ("$12,345.67", a marker it does not know): numbers;
        # durations never a code (the encoders read them as seconds, not category names)
        formatted = durations is not None
        text = None if name in categorical else as_numbers(arr)
        if text is not None and not text.stray and text.present:
            arr, formatted = text.values, text.formatted
        elif text is not None:
            _refuse_stray_words(name, arr, text)
        if _is_empty(arr) or (name not in categorical
                              and (is_temporal(arr) or is_row_number(arr, name))):
            ignored.append(name)  # an unused field; dates and row numbers that never recur
            continue
        _check_finite(name, arr, name in categorical)
        any_missing = _has_missing(arr)
        if rows is not None:
            arr = arr[rows]
        text_fit = None if name in categorical else text_values(arr)
        _refuse_unread_numbers(name, text_fit)
        if _is_empty(arr) or (text_fit is not None and is_identifier(arr, text_fit)):
            ignored.append(name)  # values only in rows the model is not fitted on; or ids
            continue
        col = _column(name, arr, name in categorical, any_missing, formatted)
        key = _fingerprint(col, arr)
        if _is_constant(col, arr) or key in seen:
            ignored.append(name)
            continue
        seen[key] = name
        out.append(col)
    if not out:
        raise InputError("no feature columns left to train on: every column is excluded, "
                         f"constant or a copy of another ({ignored})")
    return TabularInput(columns=out, ignored=ignored)


def is_temporal(arr: np.ndarray) -> bool:
    """A column of dates or times (numpy datetime64, or Python date/time objects): left
    out, because the dates of the normal rows never come back, so every later row would
    fall in the unknown category and score as anomalous. What matters in them (the hour,
    the weekday, an age) is a column the user can derive. Durations are not dates: they
    recur, and are read as seconds (:func:`anomaly.preprocessing.seconds`)."""
    if arr.dtype.kind == "M":
        return True
    if arr.dtype.kind not in "OU":
        return False
    present = [v for v in arr.tolist() if not is_missing(v)]
    if present and isinstance(present[0], datetime.date | datetime.time):
        return True
    # dates as text in a format a CSV reader does not type (12/31/2020, 31.12.2020 10:00,
    # 5 Mar 2021): each day a new category, so every later row an unknown one
    texts = [v for v in present if isinstance(v, str)]
    return (len(texts) >= MIN_ROWS_FOR_ROW_NUMBER and len(texts) == len(present)
            and sum(_TEXT_DATE.fullmatch(v.strip()) is not None for v in texts)
            >= MOSTLY_NUMBERS * len(texts))


_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_CLOCK = r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*([ap]\.?m\.?)?\s*(z|[+-]\d{2}:?\d{2}|utc)?)?"
#: A date (and optional time) as exports write it: 12/31/2020, 31.12.20, 2020/12/31,
#: 2020-12-31 10:00, 5 Mar 2021, March 5, 2021, 31-Dec-2020; or a time of day alone.
_TEXT_DATE = re.compile(
    rf"(\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}[/.-]\d{{1,2}}[/.-]\d{{1,2}}"
    rf"|\d{{1,2}}[ -]{_MONTH}[ ,-]*\d{{2,4}}|{_MONTH} \d{{1,2}},? \d{{4}}){_CLOCK}"
    r"|\d{1,2}:\d{2}(:\d{2})?\s*([ap]\.?m\.?)?", re.IGNORECASE)


#: Fewer rows than this and distinct consecutive integers may be a measurement by chance.
MIN_ROWS_FOR_ROW_NUMBER = 20


#: Column names that say they identify the row: ``id``, ``index``, ``row_no``,
#: ``customer_id``, ``order-id``, pandas' ``Unnamed: 0`` (any case); and camel case
#: ``customerId``, ``CustomerID`` (as cased: ``paid`` and ``PAID`` are not ids).
_ID_NAME = re.compile(r"id|idx|index|row|row[_ ]?(id|no|num|number)|unnamed: ?0|.*[_ .-]id",
                      re.IGNORECASE)
_ID_NAME_CAMEL = re.compile(r".*[a-z](Id|ID)")


def is_id_name(name: str) -> bool:
    """Whether a column's name says it identifies the rows."""
    stripped = name.strip()
    return bool(_ID_NAME.fullmatch(stripped) or _ID_NAME_CAMEL.fullmatch(stripped))


def is_row_number(arr: np.ndarray, name: str = "") -> bool:
    """A numeric column that numbers the rows: integers, each value once, and consecutive
    (any order, any start), as pandas' ``to_csv`` writes its index in a column with no name
    and exports write ids; or not consecutive under a name that says so (``id``,
    ``customer_id``: the ids of a sample of rows, or of a shuffled split). It holds nothing
    about what is normal, and later rows carry numbers beyond the training range: left
    out."""
    if arr.dtype.kind not in "iuf" or arr.size < MIN_ROWS_FOR_ROW_NUMBER:
        return False
    num = arr.astype(np.float64)
    if not np.isfinite(num).all() or not np.all(num == np.round(num)):
        return False
    if np.unique(num).size != num.size:
        return False
    return bool(num.max() - num.min() == num.size - 1) or is_id_name(name)


#: A value that starts as a number does (a sign, a currency sign, a digit) and has digits,
#: separators and at most a short unit after it.
_NUMBER_LIKE = re.compile(r"\s*[-+\u2212(]?\s*[^\w\s]{0,3}\s*\d[\d\s.,'\u2019_]*[^\d]{0,6}")


class TextValues(NamedTuple):
    """A text column's present values and how many distinct categories they make: built once
    per column for the identifier and unread-number checks."""

    present: list[object]
    distinct: int


def text_values(arr: np.ndarray) -> TextValues | None:
    """None for a column of numbers, dates or booleans."""
    if arr.dtype.kind in "fiuMmb":
        return None
    present = [v for v in arr.tolist() if not is_missing(v)]
    return TextValues(present, len({category_key(v) for v in present}))


def is_identifier(arr: np.ndarray, text: TextValues | None = None) -> bool:
    """A text column with each value once (names, e-mail addresses, order ids like
    ``A-1007``), in at least :data:`MIN_ROWS_FOR_ROW_NUMBER` rows: no category recurs, so
    the model learns nothing from it, and every later row brings a value it has never seen,
    which would score as anomalous. Left out, as row numbers are. Numeric columns are never
    identifiers here: a measurement can take a new value in every row. ``text``: the
    column's :func:`text_values`, if already built."""
    if text is None:
        text = text_values(arr)
    if text is None or len(text.present) < MIN_ROWS_FOR_ROW_NUMBER:
        return False
    return text.distinct == len(text.present) and not _numberish(text.present)


#: Column names that mean "the answer" in anomaly and classification tables.
LABEL_NAMES = frozenset({"label", "labels", "class", "target", "y", "outlier", "is_outlier",
                         "anomaly", "is_anomaly", "anomalous", "ground_truth", "is_fraud"})


def looks_like_label(name: str, arr: np.ndarray) -> bool:
    """A feature named as a label is (``label``, ``class``, ``is_anomaly``) with two values:
    most likely the answer, left in. Trained on normal rows only it would be constant and
    left out; with two values the training rows hold anomalies too, and the model learns
    that the anomalies' label is normal."""
    if name.strip().lower() not in LABEL_NAMES:
        return False
    values = {category_key(v) for v in np.asarray(arr).tolist() if not is_missing(v)}
    return len(values) == 2


def _numberish(present: list[object]) -> bool:
    """Mostly numbers in a format no encoder reads (``1.5k``, ``5 USD``, ``1 234,5``): a
    measurement, to be refused by name, not a column to drop without a word."""
    return sum(_number_like(str(v)) for v in present) >= len(present) / 2


#: Dotted values that are not numbers: addresses and versions (10.0.0.1, 1.2.3), told apart
#: from points between thousands (1.234.567) by their groups.
_DOTTED = re.compile(r"\s*\d+(\.\d+){2,}\s*")
_POINT_GROUPED = re.compile(r"\s*\d{1,3}(\.\d{3})+(,\d*)?\s*")


def _number_like(text: str) -> bool:
    if _DOTTED.fullmatch(text) and not _POINT_GROUPED.fullmatch(text):
        return False
    return _NUMBER_LIKE.fullmatch(text) is not None


def _refuse_unread_numbers(name: str, text: TextValues | None) -> None:
    """InputError for a text column of mostly distinct values (more than a code has) that
    look like numbers written in a format the encoders do not read: as categories, almost
    every later value would be unknown."""
    if text is None:
        return
    present, distinct = text
    if (len(present) >= MIN_ROWS_FOR_ROW_NUMBER and distinct > MAX_CODE_LEVELS
            and distinct > 0.5 * len(present) and _numberish(present)):
        examples = listed([str(v) for v in present[:3]], 3)
        raise InputError(f"column '{name}' holds values such as {examples} that look like "
                         "numbers in a format not read (write plain numbers such as 1500 or "
                         f"1,500.25), or pass --exclude {name}")


def _is_empty(arr: np.ndarray) -> bool:
    """True when no row has a value: all null, NaN or blank."""
    if arr.dtype.kind in "fiu":
        return bool(np.isnan(arr.astype(np.float64)).all())
    return all(map(is_missing, arr.tolist()))


def _check_finite(name: str, arr: np.ndarray, force_categorical: bool) -> None:
    """Raise naming the first row (0-based, header not counted) with an infinite number:
    no fill stands for it (it is a value, not a missing one) and no scale can hold it."""
    if not force_categorical and arr.dtype.kind in "fiu":
        bad = np.flatnonzero(np.isinf(arr.astype(np.float64)))
        if bad.size:
            raise InputError(f"column '{name}' row {int(bad[0])}: infinite value "
                             f"({bad.size} such rows); clean the training data first")


def _has_missing(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "fiu":
        return bool(np.isnan(arr.astype(np.float64)).any())
    return any(map(is_missing, arr.tolist()))


def _column(name: str, arr: np.ndarray, force_categorical: bool, any_missing: bool,
            force_numeric: bool = False) -> Column:
    """``force_numeric``: the values were formatted text (``"1,200"``, ``"$5"``, ``"12%"``),
    which the encoders parse as numbers (never as category names, so never as a code)."""
    if not force_categorical and arr.dtype.kind in "fiu":
        num = arr.astype(np.float64)
        num = num[~np.isnan(num)]  # missing values: filled, not measured
        levels = np.unique(num)
        if (force_numeric or levels.size > MAX_CODE_LEVELS
                or not np.all(levels == np.round(levels))):
            center, scale = _scale(num)
            fill = float(np.median(num)) if any_missing else None
            return NumericColumn(name=name, mean=center, std=scale, fill=fill)
    values_list = arr.tolist()
    cats = sorted({category_key(v) for v in values_list if not is_missing(v)})
    if any_missing:
        cats.insert(0, MISSING_CATEGORY)
    if len(cats) > MAX_CATEGORIES and len(cats) > 0.5 * len(values_list):
        raise InputError(f"column '{name}' has {len(cats)} distinct values and looks like an "
                         f"identifier or free text; pass --exclude {name}")
    return CategoricalColumn(name=name, categories=cats)


#: A text column with at least this share of its values numbers (more distinct ones than a
#: code has) is a numeric column with some junk in it.
MOSTLY_NUMBERS = 0.9


def _refuse_stray_words(name: str, arr: np.ndarray, text: TextNumbers) -> None:
    """InputError for a measurement with a few words typed into its cells (``error``,
    ``n.a``): as text it would be a category per number, every later value unknown and so
    anomalous, whatever the table's size. A code with a word among its levels (``1``,
    ``2``, ``other``) stays categorical. ``text``: the column's one parse, all rows."""
    if len(text.stray) > (1 - MOSTLY_NUMBERS) * text.present:
        return
    numbers = text.values[~np.isnan(text.values)]
    if np.unique(numbers).size <= MAX_CODE_LEVELS and np.all(numbers == np.round(numbers)):
        return
    stray = sorted({str(arr[i]) for i in text.stray})
    raise InputError(f"column '{name}' holds numbers except {len(text.stray)} value(s) that "
                     f"are not, such as {listed(stray, 3)}: clean those cells (leave a gap "
                     f"blank, or write NA), or pass --exclude {name}")


#: How numeric columns are centred and scaled: "robust" (median, and the interquartile range
#: over 1.349, the std of a normal distribution with that IQR; the std where the IQR is 0, as
#: in a column that is mostly zeros) or "standard" (mean, std). A few extreme rows in the
#: normal data inflate a std by orders of magnitude and squash every ordinary value to ~0:
#: on tests/training/test_nasty_tables.py's table with ten such rows, AUROC 0.54 standard,
#: 0.86 robust (the encoder clip and gradient clipping keep the far values from diverging).
SCALING = "robust"


def _scale(num: np.ndarray) -> tuple[float, float]:
    """(centre, scale) of a numeric column, stored as its ``mean`` and ``std``."""
    if SCALING == "robust":
        q25, med, q75 = np.percentile(num, [25, 50, 75])
        iqr = float(q75 - q25) / 1.349  # the std of a normal distribution
        if iqr > 1e-12:
            return float(med), iqr
    std = float(num.std())
    return float(num.mean()), std if std > 1e-12 else 1.0


def _is_constant(col: Column, arr: np.ndarray) -> bool:
    if isinstance(col, CategoricalColumn):  # a value and gaps: constant once filled, too
        return len([c for c in col.categories if c != MISSING_CATEGORY]) <= 1
    num = arr.astype(np.float64)
    num = num[~np.isnan(num)]  # a value and missing rows: constant once filled
    return bool(num.size == 0 or num.min() == num.max())


def _fingerprint(col: Column, arr: np.ndarray) -> bytes:
    """Equal for columns with the same values row by row (as the model would see them)."""
    if isinstance(col, NumericColumn):
        return b"n" + np.ascontiguousarray(arr.astype(np.float64)).tobytes()
    return b"c" + "\x1f".join(MISSING_CATEGORY if is_missing(v) else category_key(v)
                              for v in arr.tolist()).encode()


def missing_filled(schema: object) -> list[str]:
    """Descriptions of the columns of a tabular schema whose missing values are filled:
    ``name (median 3.5)`` for numeric ones, ``name (a category)`` for categorical ones."""
    if not isinstance(schema, TabularInput):
        return []
    out = []
    for col in schema.columns:
        if isinstance(col, NumericColumn) and col.fill is not None:
            out.append(f"{col.name} (median {col.fill:g})")
        elif isinstance(col, CategoricalColumn) and MISSING_CATEGORY in col.categories:
            out.append(f"{col.name} (a category)")
    return out


def likelihood_blocks(schema: TabularInput, feature_blocks: list[tuple[int, int]]) -> list[Block]:
    """Gaussian runs for numeric columns, one categorical block per categorical column."""
    blocks: list[Block] = []
    for col, (a, b) in zip(schema.columns, feature_blocks, strict=True):
        kind = "gaussian" if isinstance(col, NumericColumn) else "categorical"
        if kind == "gaussian" and blocks and blocks[-1][0] == "gaussian":
            blocks[-1] = ("gaussian", blocks[-1][1], b)
        else:
            blocks.append((kind, a, b))
    return blocks
