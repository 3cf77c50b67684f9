"""JSON rows -> the graph's x (B, D), fast, for the service's small requests.

:meth:`anomaly.preprocessing.TabularPreprocessor.transform` is columnar and pays a fixed cost
per column (about 1 ms for one 30-column row), which would dominate a single-sample request.
This is the same arithmetic row by row: numeric values ``(float(v) - mean) / std`` in float64
stored as float32, categorical values one-hot through the same lookup with the same unknown
slot. Any row it cannot take cleanly is handed to ``transform`` itself, so error messages (and
any case this fast path does not cover) stay exactly the library's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from anomaly.preprocessing import TabularPreprocessor, category_key, rows_to_columns
from anomaly.schema import NumericColumn


class _Fallback(Exception):
    """This input needs the library's columnar path (usually: it is invalid)."""


class RowEncoder:
    """Precomputed per-column plan of one preprocessor."""

    def __init__(self, prep: TabularPreprocessor) -> None:
        self.prep = prep
        # (name, is_numeric, start, mean, std, lookup, unknown slot) per schema column
        self.plan: list[tuple[str, bool, int, float, float, dict[str, int], int]] = []
        for col, (start, stop) in zip(prep.schema.columns, prep.blocks, strict=True):
            if isinstance(col, NumericColumn):
                self.plan.append((col.name, True, start, col.mean, col.std, {}, 0))
            else:
                lookup = {c: k for k, c in enumerate(col.categories)}  # as the library's
                self.plan.append((col.name, False, start, 0.0, 1.0, lookup, stop - start - 1))

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
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise _Fallback
            out = x[i]
            for name, numeric, start, mean, std, lookup, unknown in self.plan:
                value = row.get(name)
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise _Fallback
                if numeric:
                    try:
                        f = float(value)
                    except (TypeError, ValueError, OverflowError):
                        raise _Fallback from None
                    if not math.isfinite(f):
                        raise _Fallback
                    out[start] = (f - mean) / std
                else:
                    out[start + lookup.get(category_key(value), unknown)] = 1.0
        return x
