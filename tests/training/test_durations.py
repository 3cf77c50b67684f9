"""Durations (Parquet ``duration``, pandas ``timedelta64``, Python ``timedelta``) are
measurements that recur, read as seconds by training and by every scoring path; they were
left out as if they were dates."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from anomaly.batch.sources import read_table, table_columns
from anomaly.bundle import NumericColumn
from anomaly.inference import Scorer
from anomaly.preprocessing import seconds, to_float
from training.pipeline import tabular_config, train_tabular


def test_seconds_in_any_unit() -> None:
    want = [1.5, np.nan, 7200.0]
    for unit in ("ms", "us", "ns"):
        arr = np.array([1500, "NaT", 7_200_000], dtype="timedelta64[ms]").astype(
            f"timedelta64[{unit}]")
        np.testing.assert_array_equal(seconds(arr), want)
    objects = np.array([datetime.timedelta(seconds=1.5), None,
                        datetime.timedelta(hours=2)], dtype=object)
    np.testing.assert_array_equal(seconds(objects), want)
    values, problems = to_float("t", objects)
    np.testing.assert_array_equal(values[[0, 2]], [1.5, 7200.0])
    assert problems == {1: "column 't': value is missing"}
    _, problems = to_float("t", np.array([1, "NaT"], dtype="timedelta64[s]"))
    assert problems == {1: "column 't': value is missing"}


def test_a_duration_column_trains_and_scores_as_seconds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    load = rng.normal(size=n)
    took_s = np.round(np.exp(2.0 + 0.5 * load + 0.1 * rng.normal(size=n)), 3)  # seconds
    table = pa.table({"load": load, "took": pa.array((took_s * 1000).astype(np.int64),
                                                     pa.duration("ms"))})
    path = tmp_path / "calls.parquet"
    pq.write_table(table, path)
    report = train_tabular(table_columns(read_table(path)), tmp_path / "b", "calls",
                           tabular_config(epochs=4, progress=False, seed=0))
    schema = report.manifest.input
    took = next(c for c in schema.columns if c.name == "took")
    assert isinstance(took, NumericColumn) and "took" not in schema.ignored
    assert 5 < took.mean < 9  # the median of the fitted rows, in seconds (not 7,000 ms)

    scorer = Scorer(report.path)
    prep = scorer.tabular
    as_arrow, reasons = prep.encode_arrow(table.slice(0, 50), from_csv=False)
    assert reasons == [None] * 50
    in_us = pa.table({"load": load[:50], "took": table.column("took").slice(0, 50).cast(
        pa.duration("us"))})
    np.testing.assert_array_equal(prep.encode_arrow(in_us, from_csv=False)[0], as_arrow)
    want = scorer.score(as_arrow).scores
    frame = pd.DataFrame({"load": load[:50], "took": pd.to_timedelta(took_s[:50], unit="s")})
    np.testing.assert_allclose(scorer.score_frame(frame)["score"].to_numpy(), want,
                               rtol=1e-6)
    as_seconds = [{"load": float(a), "took": float(b)}
                  for a, b in zip(load[:50], took_s[:50], strict=True)]
    np.testing.assert_allclose(scorer.score_rows(as_seconds).scores, want, rtol=1e-6)
    as_objects = [{"load": r["load"], "took": datetime.timedelta(seconds=r["took"])}
                  for r in as_seconds]
    np.testing.assert_allclose(scorer.score_rows(as_objects).scores, want, rtol=1e-6)
    # a call ten times as long as any normal one is an anomaly
    slow = [{"load": 0.0, "took": datetime.timedelta(seconds=float(took_s.max()) * 10)}]
    assert scorer.score_rows(slow).is_anomaly[0]
