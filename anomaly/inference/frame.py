"""pandas DataFrames in and out, for users who hold their tables in pandas.

A frame goes in as ``{column: ndarray}``, the form :meth:`TabularPreprocessor.transform` and
``training.train_tabular`` already take, so a frame gets exactly the scores, the schema and the
error messages a dict of columns does. pandas is optional (the ``pandas`` extra): it is
imported only when a frame is passed in or asked for, and batch scoring and the service stay
on pyarrow and numpy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from anomaly.bundle import Bundle, TabularInput, load_bundle
from anomaly.errors import InputError
from anomaly.inference.noise import DEFAULT_SEED
from anomaly.preprocessing.values import seconds

if TYPE_CHECKING:
    import pandas as pd

    from anomaly.inference.scorer import Scorer


def is_frame(obj: object) -> bool:
    """True for a pandas DataFrame; never imports pandas (a frame means it is loaded)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """DataFrame -> ``{column: (n,) ndarray}``.

    Numeric columns (numpy or pandas' nullable Int64/Float64) become numbers, missing values
    NaN; everything else (text, categoricals, booleans) becomes an object array with None
    where a value is missing, which the encoders report as missing. Durations (timedelta)
    become seconds. Dates and times are refused: the model has no notion of them, so turn
    them into numbers or text first.
    """
    import pandas as pd

    if not is_frame(frame):
        raise InputError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    names = list(frame.columns)
    odd = [n for n in names if not isinstance(n, str)]
    if odd:
        raise InputError(f"column names must be text, got {odd[:3]!r}; rename them (for "
                         "example df.columns = df.columns.astype(str))")
    if len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"duplicate column name(s) {dup}: each column needs its own name")
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        series = frame.iloc[:, i]
        dtype = series.dtype
        if pd.api.types.is_timedelta64_dtype(dtype):
            out[name] = seconds(series.to_numpy())  # durations are seconds, NaT missing
            continue
        if (pd.api.types.is_datetime64_any_dtype(dtype)
                or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype)):
            raise InputError(f"column '{name}' holds {dtype} values; convert it to numbers "
                             "(e.g. seconds) or text first")
        if isinstance(dtype, np.dtype) and dtype.kind in "fiu":
            out[name] = series.to_numpy()
        elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            out[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[name] = series.to_numpy(dtype=object, na_value=None)
    return out


def score_frame(scorer: Scorer, frame: pd.DataFrame, explain: int = 0,
                seeds: int | Sequence[int] = DEFAULT_SEED,
                mc_samples: int | None = None, score_se: bool = False) -> pd.DataFrame:
    """Score the rows of ``frame`` -> a DataFrame with the same index: ``score`` (nats, higher
    = more anomalous), ``p_value``, ``is_anomaly``, with ``score_se`` its Monte Carlo standard
    error in nats (NaN where the bundle predates it or L = 1), and with ``explain`` = K the
    K columns that contribute most (``topK_column``, ``topK_score`` in nats), as ``anomaly
    score --explain`` writes them. A bad value raises :class:`InputError` naming the row by
    its index label."""
    import pandas as pd

    prep = scorer.tabular
    if explain < 0:
        raise InputError(f"explain must be 0 or more, got {explain}")
    columns = frame_columns(frame)
    if len(frame) == 0:
        raise InputError("nothing to score: the DataFrame has no rows")
    prepared = prep.transform(columns, strict=False)
    if prepared.rejects:
        first = min(prepared.rejects)
        more = (f" (and {len(prepared.rejects) - 1} more bad rows)"
                if len(prepared.rejects) > 1 else "")
        raise InputError(f"row with index {frame.index[first]!r}: "
                         f"{prepared.rejects[first]}{more}; fix or drop these rows first")
    result = scorer.score(prepared.x, seeds, mc_samples)
    out: dict[str, Any] = {"score": result.scores, "p_value": result.p_values,
                           "is_anomaly": result.is_anomaly}
    if score_se:
        se = result.score_se
        out["score_se"] = np.full(len(result.scores), np.nan) if se is None else se
    if explain:
        tops = scorer.top_columns(result, min(explain, len(prep.column_names)))
        for k in range(len(tops[0])):
            out[f"top{k + 1}_column"] = [row[k][0] for row in tops]
            out[f"top{k + 1}_score"] = np.array([row[k][1] for row in tops])
    return pd.DataFrame(out, index=frame.index)


def read_bundle_schema(bundle: Bundle | str | os.PathLike[str]) -> pd.DataFrame:
    """The columns a tabular bundle expects, one row each (name, type, mean, std,
    categories), read from its ``bundle.json`` without loading the model: a look before
    scoring. See :meth:`anomaly.bundle.TabularInput.to_frame`."""
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify_hash=False)
    schema = loaded.manifest.input
    if not isinstance(schema, TabularInput):
        raise InputError(f"model '{loaded.name}' scores {schema.height}x{schema.width} images "
                         f"with {schema.channels} channel(s); it has no columns to list")
    return schema.to_frame()
