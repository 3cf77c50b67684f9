"""Infer a tabular input schema (column types, scaling, categories) from normal training rows."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from anomaly.bundle import CategoricalColumn, Column, NumericColumn, TabularInput
from anomaly.errors import InputError
from anomaly.preprocessing import category_key
from training.likelihood import Block

#: A string column with more distinct values than this (and mostly unique) is an identifier.
MAX_CATEGORIES = 200


def infer_schema(columns: Mapping[str, np.ndarray], categorical: Collection[str] = (),
                 exclude: Collection[str] = ()) -> TabularInput:
    """Numeric dtype -> numeric column (mean/std of these rows); anything else, or a name in
    ``categorical`` -> categorical over the values seen. ``exclude`` drops ids and labels."""
    unknown = (set(categorical) | set(exclude)) - set(columns)
    if unknown:
        raise InputError(f"column(s) {sorted(unknown)} named in --categorical/--exclude are not "
                         f"in the data; its columns are {list(columns)}")
    out: list[Column] = []
    for name, values in columns.items():
        if name in exclude:
            continue
        arr = np.asarray(values)
        if name not in categorical and arr.dtype.kind in "fiu":
            num = arr.astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(num))
            if bad.size:
                raise InputError(f"column '{name}' row {int(bad[0])}: missing, NaN or infinite "
                                 f"value ({bad.size} such rows); clean or impute the training "
                                 "data first")
            std = float(num.std())
            out.append(NumericColumn(name=name, mean=float(num.mean()),
                                     std=std if std > 1e-12 else 1.0))
            continue
        values_list = arr.tolist()
        missing = [i for i, v in enumerate(values_list) if v is None or v != v or v == ""]
        if missing:
            raise InputError(f"column '{name}' row {missing[0]}: missing value ({len(missing)} "
                             "such rows); clean or impute the training data first")
        cats = sorted({category_key(v) for v in values_list})
        if len(cats) > MAX_CATEGORIES and len(cats) > 0.5 * len(values_list):
            raise InputError(f"column '{name}' has {len(cats)} distinct values and looks like an "
                             f"identifier or free text; pass --exclude {name}")
        out.append(CategoricalColumn(name=name, categories=cats))
    if not out:
        raise InputError("no feature columns left to train on after --exclude")
    return TabularInput(columns=out)


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
