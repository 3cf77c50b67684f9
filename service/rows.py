"""JSON rows -> the graph's x (B, D), fast, for the service's small requests.

:meth:`anomaly.preprocessing.TabularPreprocessor.transform` is columnar and pays a fixed cost
per column (about 1 ms for one 30-column row), which would dominate a single-sample request.
This is the same arithmetic without the per-column machinery: numeric values
``(float(v) - mean) / std`` in float64 stored as float32 (all numeric columns of all rows in one
numpy expression), categorical values one-hot through the same lookup with the same unknown
slot. Any row it cannot take cleanly is handed to ``transform`` itself, so error messages (and
any case this fast path does not cover) stay exactly the library's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from anomaly.preprocessing import TabularPreprocessor, category_key, rows_to_columns
from anomaly.schema import CategoricalColumn, NumericColumn


class _Fallback(Exception):
    """This input needs the library's columnar path (usually: it is invalid)."""


class RowEncoder:
    """Precomputed plan of one preprocessor: numeric columns vectorised, categorical ones
    through the library's lookup."""

    def __init__(self, prep: TabularPreprocessor) -> None:
        self.prep = prep
        numeric = [(col, start) for col, (start, _) in zip(prep.schema.columns, prep.blocks,
                                                           strict=True)
                   if isinstance(col, NumericColumn)]
        self.numeric_names = [col.name for col, _ in numeric]
        index = [start for _, start in numeric]
        # numeric columns first and adjacent (the usual case): a slice, not fancy indexing
        self.numeric_slice: slice | None = (
            slice(0, len(index)) if index == list(range(len(index))) else None)
        self.numeric_index = np.array(index, dtype=np.intp)
        self.means = np.array([col.mean for col, _ in numeric], dtype=np.float64)
        self.stds = np.array([col.std for col, _ in numeric], dtype=np.float64)
        # (name, start, lookup, unknown slot) per categorical column, lookup as the library's
        self.categorical: list[tuple[str, int, dict[str, int], int]] = [
            (col.name, start, {c: k for k, c in enumerate(col.categories)}, stop - start - 1)
            for col, (start, stop) in zip(prep.schema.columns, prep.blocks, strict=True)
            if isinstance(col, CategoricalColumn)]

    def encode(self, rows: Sequence[Any]) -> np.ndarray:
        """Rows (list of {column: value}) -> x (B, D) float32; raises the library's InputError
        for bad rows."""
        try:
            return self._fast(rows)
        except _Fallback:
            return self.prep.transform(rows_to_columns(rows), strict=True).x

    def _fast(self, rows: Sequence[Any]) -> np.ndarray:
        if not rows:
            raise _Fallback
        x = np.zeros((len(rows), self.prep.input_dim), dtype=np.float32)
        names = self.numeric_names
        if names:
            try:
                # numpy converts each Python value with float(value), exactly as the library;
                # None becomes NaN (caught below); a missing key or a non-object row raises
                num = np.array([[row[name] for name in names] for row in rows],
                               dtype=np.float64)  # (B, n_numeric)
            except (KeyError, TypeError, ValueError, OverflowError):
                raise _Fallback from None
            if num.ndim != 2 or not np.isfinite(num).all():
                raise _Fallback
            # (value - mean) / std in float64, stored as float32: the library's arithmetic
            z = (num - self.means) / self.stds
            if self.numeric_slice is not None:
                x[:, self.numeric_slice] = z
            else:
                x[:, self.numeric_index] = z
        for name, start, lookup, unknown in self.categorical:
            for i, row in enumerate(rows):
                value = row.get(name) if isinstance(row, Mapping) else None
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise _Fallback
                x[i, start + lookup.get(category_key(value), unknown)] = 1.0
        return x
