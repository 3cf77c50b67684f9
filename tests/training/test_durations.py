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
    _, problems = to_float("t", ["00:05:00", "soon"])  # a bare clock is not read, but told
    assert problems == {0: "column 't': '00:05:00' is not a number (a clock: send a duration "
                           "as seconds, or as ISO 8601 such as PT1H30M)",
                        1: "column 't': 'soon' is not a number"}


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


def test_durations_written_as_text_are_seconds(tmp_path: Path) -> None:
    """A timedelta column that pandas wrote to CSV (``0 days 00:00:07.389000``) or an ISO
    8601 one (``PT7.389S``) trains through the CLI as seconds, and scores the same as its
    plain seconds; a bare clock (``00:05:00``) is not read as one."""
    import subprocess
    import sys

    from anomaly.preprocessing import formatted_number

    assert formatted_number("-1 days +23:59:58.500000") == -1.5
    assert formatted_number("P1DT2H30M") == 95400.0 and formatted_number("PT") is None
    assert formatted_number("00:05:00") is None and formatted_number("P1M") is None

    rng = np.random.default_rng(1)
    load = rng.normal(size=500)
    took = np.round(np.exp(2.0 + 0.5 * load + 0.1 * rng.normal(size=500)), 3)
    frame = pd.DataFrame({"load": load, "took": pd.to_timedelta(took, unit="s")})
    written = tmp_path / "calls.csv"
    frame.to_csv(written, index=False)
    assert "0 days 00:00:" in written.read_text()
    iso = tmp_path / "iso.csv"
    pd.DataFrame({"load": load, "took": [f"PT{t}S" for t in took]}).to_csv(iso, index=False)
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"load": load, "took": took}).to_csv(plain, index=False)

    def cli(*args: str | Path) -> str:
        proc = subprocess.run([sys.executable, "-m", "anomaly", *map(str, args)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = cli("train", written, "--out", tmp_path / "m", "--epochs", "4", "--quiet")
    assert "left out" not in out
    took_col = next(c for c in Scorer(tmp_path / "m").tabular.schema.columns
                    if c.name == "took")
    assert isinstance(took_col, NumericColumn) and 5 < took_col.mean < 9
    scored = {}
    for name, source in (("text", written), ("iso", iso), ("plain", plain)):
        cli("score", tmp_path / "m", source, "--out", tmp_path / f"{name}.out.csv")
        scored[name] = pd.read_csv(tmp_path / f"{name}.out.csv")["score"].to_numpy()
    np.testing.assert_allclose(scored["text"], scored["plain"], rtol=1e-6)
    np.testing.assert_allclose(scored["iso"], scored["plain"], rtol=1e-6)
