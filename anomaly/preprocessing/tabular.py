"""Raw table rows -> the graph's ``x`` (B, D) float32, using only what the bundle stores.

Numeric columns are standardised, ``(float(v) - mean) / std`` in float64 stored as float32;
categorical columns become one-hot blocks with a trailing unknown slot. One encoder, three
ways in, so the library, batch scoring (local and Ray) and the service give the same ``x``
and the same rejection reasons for the same values:

* :meth:`TabularPreprocessor.transform`: columns of Python or numpy values (training,
  ``Scorer.score_rows`` with a dict of columns); strict, or bad rows reported per row;
* :meth:`TabularPreprocessor.encode_rows`: a list of row dicts, the service's small JSON
  requests: all numeric values in one numpy expression, no per-column machinery (a row it
  cannot take cleanly goes through ``transform``, so errors are the same);
* :meth:`TabularPreprocessor.encode_arrow`: an Arrow chunk (batch scoring, CSV bodies):
  numeric columns parsed by Arrow when they all parse, categorical columns mapped once per
  distinct value.

All three end in the same arithmetic (:meth:`TabularPreprocessor._assemble`); what a value
means (missing, category, number) is :mod:`anomaly.preprocessing.values`.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from anomaly.bundle.schema import (
    MISSING_CATEGORY,
    UNKNOWN_CATEGORY,
    CategoricalColumn,
    NumericColumn,
    TabularInput,
)
from anomaly.errors import InputError, listed, near_names
from anomaly.preprocessing.values import (
    all_finite,
    category_key,
    csv_category,
    is_missing,
    iter_values,
    rows_to_columns,
    seconds,
    to_float,
)

#: The most standard deviations from its training mean a numeric value is encoded as. A
#: value further out (1e39 in a column of unit scale, a unit typed wrong) would overflow
#: float32, or its squared error in the likelihood would, and score inf or fail its batch;
#: clipped, it scores as the extreme, finite anomaly it is (its Gaussian term is still
#: ~1e24 nats at the variance floor).
MAX_STANDARD = 1e12


@dataclass
class Prepared:
    """``x`` holds the rows that passed; ``index`` their positions in the input;
    ``rejects`` maps input position -> reason for the rows that did not."""

    x: np.ndarray  # (B, D) float32
    index: np.ndarray  # (B,) int64
    rejects: dict[int, str] = field(default_factory=dict)


def rejected_rows_error(bad: Mapping[int, str]) -> InputError:
    """The error for strict encoding: the first bad row's reason, and how many more."""
    i = min(bad)
    more = f" (and {len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
    return InputError(f"row {i}: {bad[i]}{more}; fix or drop these rows before scoring")


class _Fallback(Exception):
    """This input needs the columnar path (usually: it is invalid)."""


def _one_value(name: str) -> Callable[[Any], tuple[Any, ...]]:
    """``operator.itemgetter`` for one key, returning a 1-tuple as it does for several."""
    def get(row: Any) -> tuple[Any, ...]:
        return (row[name],)
    return get


def _standardise(numeric: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """(n, k) raw values -> (n, k) float64 standard scores clipped to +-MAX_STANDARD, so that
    a value far outside its column still scores as a finite extreme. ``maximum`` then
    ``minimum`` in place are np.clip's values (NaN stays NaN) at half its call cost
    (0.9 against 1.8 us for one row)."""
    standard = np.subtract(numeric, means)  # (n, k)
    np.divide(standard, stds, out=standard)
    np.maximum(standard, -MAX_STANDARD, out=standard)
    return np.minimum(standard, MAX_STANDARD, out=standard)


class TabularPreprocessor:
    """Applies a :class:`TabularInput` schema to raw values."""

    def __init__(self, schema: TabularInput) -> None:
        self.schema = schema
        self.feature_names: list[str] = []
        #: (start, stop) slice of x for each schema column, in schema order.
        self.blocks: list[tuple[int, int]] = []
        for col in schema.columns:
            start = len(self.feature_names)
            if isinstance(col, NumericColumn):
                self.feature_names.append(col.name)
            else:
                self.feature_names += [f"{col.name}={c}" for c in col.categories]
                self.feature_names.append(f"{col.name}={UNKNOWN_CATEGORY}")
            self.blocks.append((start, len(self.feature_names)))
        pairs = list(zip(schema.columns, self.blocks, strict=True))
        numeric = [(c, a) for c, (a, _) in pairs if isinstance(c, NumericColumn)]
        self._numeric_names = [c.name for c, _ in numeric]
        index = [a for _, a in numeric]
        # numeric columns first and adjacent (the usual case): a slice, not fancy indexing
        self._numeric_at: slice | np.ndarray = (
            slice(0, len(index)) if index == list(range(len(index)))
            else np.array(index, dtype=np.intp))
        #: row dict -> tuple of its numeric values in schema order (KeyError when one is absent)
        self._numeric_getter: Callable[[Any], tuple[Any, ...]] = (
            operator.itemgetter(*self._numeric_names) if len(self._numeric_names) > 1
            else _one_value(self._numeric_names[0]) if self._numeric_names else tuple)
        self._means = np.array([c.mean for c, _ in numeric], dtype=np.float64)
        self._stds = np.array([c.std for c, _ in numeric], dtype=np.float64)
        #: (name, start, {category: slot}, unknown slot) per categorical column
        self._categorical = [
            (c.name, a, {k: i for i, k in enumerate(c.categories)}, b - a - 1)
            for c, (a, b) in pairs if isinstance(c, CategoricalColumn)]
        self._known = {c.name: frozenset(c.categories)
                       for c in schema.columns if isinstance(c, CategoricalColumn)}
        self._starts = np.array([a for _, a, _, _ in self._categorical], dtype=np.intp)
        #: per categorical column, the slot of a missing value (-1: missing is a bad row)
        self._missing_slots = [lookup.get(MISSING_CATEGORY, -1)
                               for _, _, lookup, _ in self._categorical]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.schema.columns]

    @property
    def input_dim(self) -> int:
        return len(self.feature_names)

    def column_scores(self, feature_scores: np.ndarray) -> np.ndarray:
        """(B, D) per-feature scores -> (B, n_columns): one-hot blocks summed back into the
        column they encode (only the observed slot is non-zero, so the sum is that slot)."""
        return np.stack([feature_scores[:, a:b].sum(axis=1) for a, b in self.blocks], axis=1)

    # --- the arithmetic -----------------------------------------------------------------------

    def _assemble(self, numeric: np.ndarray, codes: np.ndarray | list[list[int]]
                  ) -> np.ndarray:
        """numeric (n, n_numeric) float64 raw values and codes (n, n_categorical), the slot
        of each categorical value in its block (-1: leave the block empty) -> x (n, D)
        float32. Codes as an array are placed with a fixed handful of numpy calls; as lists
        (a few rows from :meth:`encode_rows`) one by one, which is faster for so few."""
        n = numeric.shape[0]
        if not self._categorical and self._numeric_names:  # all numeric, in schema order
            return _standardise(numeric, self._means, self._stds).astype(np.float32)
        x = np.zeros((n, self.input_dim), dtype=np.float32)
        if self._numeric_names:
            x[:, self._numeric_at] = _standardise(numeric, self._means, self._stds)
        if not self._categorical:
            return x
        if isinstance(codes, list):
            starts = [start for _, start, _, _ in self._categorical]
            for i, row in enumerate(codes):
                for start, slot in zip(starts, row, strict=True):
                    if slot >= 0:
                        x[i, start + slot] = 1.0
            return x
        rows, cols = np.nonzero(codes >= 0)
        x[rows, self._starts[cols] + codes[rows, cols]] = 1.0
        return x

    def _slot(self, column: int, value: Any) -> int:
        _, _, lookup, unknown = self._categorical[column]
        return lookup.get(category_key(value), unknown)

    def _learned_marker(self, column: int, value: Any) -> bool:
        """A missing marker that is a category of the bundle: ``?`` or ``-`` were text to
        bundles trained before they were markers (:data:`MISSING_TOKENS`), and such a
        bundle keeps scoring them as the category it learned."""
        return isinstance(value, str) and value.strip() in self._categorical[column][2]

    # --- columns of Python / numpy values -------------------------------------------------------

    def transform(self, columns: Mapping[str, Sequence[Any] | np.ndarray],
                  strict: bool = True) -> Prepared:
        """Columns of raw values (extra columns ignored) -> :class:`Prepared`. ``strict``
        raises on the first bad row; otherwise bad rows are left out and reported."""
        missing = [name for name in self.column_names if name not in columns]
        if missing:
            raise InputError(f"missing column(s) {listed(missing)}"
                             f"{near_names(missing, list(columns))}; the model expects "
                             f"{listed(self.column_names)}")
        n = len(columns[self.column_names[0]])
        numeric = np.empty((n, len(self._numeric_names)), dtype=np.float64)
        codes = np.empty((n, len(self._categorical)), dtype=np.intp)
        bad: dict[int, str] = {}
        k = j = 0
        for col in self.schema.columns:
            values = columns[col.name]
            if len(values) != n:
                raise InputError(f"column '{col.name}' has {len(values)} values, expected {n}")
            if isinstance(col, NumericColumn):
                num, problems = to_float(col.name, values, col.fill)
                for i, why in problems.items():
                    bad.setdefault(i, why)
                numeric[:, k] = np.where(np.isfinite(num), num, col.mean)
                k += 1
                continue
            missing_slot = self._missing_slots[j]
            for i, value in enumerate(iter_values(values)):
                if not is_missing(value) or self._learned_marker(j, value):
                    codes[i, j] = self._slot(j, value)
                    continue
                codes[i, j] = missing_slot
                if missing_slot < 0:
                    bad.setdefault(i, f"column '{col.name}': value is missing")
            j += 1
        if bad and strict:
            raise rejected_rows_error(bad)
        x = self._assemble(numeric, codes)
        keep = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
        return Prepared(x[keep], keep, bad)

    # --- a list of row dicts (the service's JSON) -------------------------------------------------

    def encode_rows(self, rows: Sequence[Any]) -> np.ndarray:
        """Rows (list of {column: value}) -> x (B, D) float32; raises InputError naming the
        first bad row, with the same message as :meth:`transform`."""
        try:
            return self._encode_rows_fast(rows)
        except _Fallback:
            return self.transform(rows_to_columns(rows), strict=True).x

    def unknown_columns(self, rows: Sequence[Any]) -> list[str]:
        """Keys of row dicts that are not columns of the schema, in first-seen order. The
        encoders ignore them; a strict caller rejects them, as they usually mean the rows were
        made for another model or another version of its schema."""
        known = self.accepted_columns
        extra: dict[str, None] = {}
        for row in rows:
            if isinstance(row, Mapping) and not known.issuperset(row):
                extra.update(dict.fromkeys(k for k in row if k not in known))
        return list(extra)

    def reject_booleans(self, rows: Sequence[Any]) -> None:
        """InputError for a boolean in a numeric column of a row dict: the encoders read
        ``true`` as 1.0 (Python's ``float(True)``), which a strict caller (a JSON body) must
        not guess. Booleans in categorical columns are categories like any other."""
        for i, row in enumerate(rows):
            # one C-level pass over the value types; the columns only when a bool is there
            if isinstance(row, Mapping) and bool in set(map(type, row.values())):
                for name in self._numeric_names:
                    if isinstance(row.get(name), bool):
                        raise InputError(f"row {i}: column '{name}': "
                                         f"{str(row[name]).lower()} is a boolean, not a "
                                         "number")

    @functools.cached_property
    def accepted_columns(self) -> frozenset[str]:
        """The columns a row may carry: those read, and those of the training data the model
        leaves out on purpose (excluded, constant, duplicated)."""
        return frozenset([*self.column_names, *self.schema.ignored])

    def _encode_rows_fast(self, rows: Sequence[Any]) -> np.ndarray:
        if not rows:
            raise _Fallback
        n = len(rows)
        names = self._numeric_names
        numeric = np.empty((n, 0), dtype=np.float64)
        if names:
            try:
                # numpy converts each Python value with float(value), exactly as to_float;
                # None becomes NaN (caught below); a missing key or a non-object row raises
                get = self._numeric_getter
                numeric = np.array([get(row) for row in rows],
                                   dtype=np.float64)  # (B, n_numeric)
            except (KeyError, TypeError, ValueError, OverflowError):
                raise _Fallback from None
            if numeric.ndim != 2 or not all_finite(numeric):
                raise _Fallback
        codes: list[list[int]] = []
        for row in rows:
            if type(row) is not dict and not isinstance(row, Mapping):
                raise _Fallback
            if not self._categorical:
                continue
            slots = []
            for j, ((name, _, lookup, unknown), missing_slot) in enumerate(zip(
                    self._categorical, self._missing_slots, strict=True)):
                value = row.get(name)
                if is_missing(value) and not self._learned_marker(j, value):
                    if missing_slot < 0 or name not in row:
                        raise _Fallback  # the columnar path says which row, or fills it
                    slots.append(missing_slot)
                    continue
                slots.append(lookup.get(category_key(value), unknown))
            codes.append(slots)
        return self._assemble(numeric, codes)

    # --- Arrow chunks (batch scoring, CSV bodies) ------------------------------------------------

    def encode_arrow(self, table: pa.Table, from_csv: bool,
                     reasons: list[str | None] | None = None
                     ) -> tuple[np.ndarray, list[str | None]]:
        """An Arrow table holding the schema's columns (binary when read from CSV) ->
        x (n, D) float32 for every row (zeros where rejected) and the reason each row is
        rejected (None for good rows). ``reasons`` marks rows rejected before encoding
        (malformed CSV lines); they are not looked at."""
        n = table.num_rows
        reasons = [None] * n if reasons is None else list(reasons)
        good = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
        sub = table if good.size == n else table.take(good)
        g = int(good.size)
        numeric = np.empty((g, len(self._numeric_names)), dtype=np.float64)
        codes = np.empty((g, len(self._categorical)), dtype=np.intp)
        bad: dict[int, str] = {}  # position in sub -> reason
        k = j = 0
        for col in self.schema.columns:
            arr = sub.column(col.name).combine_chunks()
            if isinstance(col, NumericColumn):
                num, problems = to_float(col.name, _numeric_values(arr), col.fill)
                for i, why in problems.items():
                    bad.setdefault(i, why)
                numeric[:, k] = np.where(np.isfinite(num), num, col.mean)
                k += 1
            else:
                codes[:, j], problems = self._arrow_codes(j, col.name, arr, from_csv)
                for i, why in problems.items():
                    bad.setdefault(i, why)
                j += 1
        x = np.zeros((n, self.input_dim), dtype=np.float32)
        if g:
            x[good] = self._assemble(numeric, codes)
        for i, why in bad.items():
            reasons[int(good[i])] = why
            x[good[i]] = 0.0
        return x, reasons

    def _arrow_codes(self, j: int, name: str, arr: pa.Array, from_csv: bool
                     ) -> tuple[np.ndarray, dict[int, str]]:
        """A categorical column -> (n,) slot per row (-1 where missing) and rejects; the work
        is per distinct value, not per row."""
        missing_slot = self._missing_slots[j]
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if not (pa.types.is_binary(arr.type) or pa.types.is_string(arr.type)
                or pa.types.is_large_string(arr.type)):
            values = arr.to_pylist()  # numbers, booleans: category_key() normalises them
            code = np.array([missing_slot if is_missing(v) else self._slot(j, v)
                             for v in values], dtype=np.intp)
            return code, _missing_reasons(name, code)
        encoded = pc.dictionary_encode(arr)
        known = self._known[name]
        slots = np.empty(len(encoded.dictionary) + 1, dtype=np.intp)
        invalid: list[int] = []
        for d, value in enumerate(encoded.dictionary.to_pylist()):
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    value = value.decode("utf-8", "replace")
                    invalid.append(d)
            value = csv_category(value, known) if from_csv else value
            gap = is_missing(value) and not self._learned_marker(j, value)
            slots[d] = missing_slot if gap else self._slot(j, value)
        slots[-1] = missing_slot  # nulls
        index = encoded.indices.fill_null(len(slots) - 1).to_numpy(zero_copy_only=False)
        code = slots[index]  # (n,)
        problems = {int(i): f"column '{name}': value is not valid UTF-8 text (is the file "
                    "in another encoding?)" for i in np.flatnonzero(np.isin(index, invalid))}
        for i, why in _missing_reasons(name, code).items():
            problems.setdefault(i, why)
        return code, problems


def _missing_reasons(name: str, code: np.ndarray) -> dict[int, str]:
    return {int(i): f"column '{name}': value is missing" for i in np.flatnonzero(code < 0)}


def _numeric_values(arr: pa.Array) -> np.ndarray:
    """A numeric column's values for :func:`to_float`: float64 when Arrow parses them all
    (the fast path), else the raw values as Python objects so that ``to_float`` reports
    exactly which are missing or not numbers. Arrow accepts a subset of what Python's
    ``float`` does and rounds the same way, so both paths give the same numbers."""
    t = arr.type
    if pa.types.is_duration(t):  # in seconds, as training read it (values.seconds)
        secs = seconds(arr.to_numpy(zero_copy_only=False))  # null -> NaT -> NaN
        if not arr.null_count:
            return secs
        out = secs.astype(object)
        out[np.isnan(secs)] = None  # reported as missing (or filled), as other nulls are
        return out
    if arr.null_count == 0:
        if pa.types.is_floating(t) or pa.types.is_integer(t):
            return arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if pa.types.is_decimal(t):  # money from a database or Spark: as training read it
            return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        if pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
            try:
                return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    values = arr.to_pylist()
    if pa.types.is_binary(t):
        values = [None if v is None else v.decode("utf-8", "replace") for v in values]
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
