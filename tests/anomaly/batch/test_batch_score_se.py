"""``--score-se``: each score's Monte Carlo standard error as an output column, the
Scorer's own, empty where there is none (L = 1) and for bundles from before it existed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from anomaly.batch import ScoreOptions, score_path
from anomaly.batch.sources import read_table, table_columns
from anomaly.inference import Scorer
from tests.anomaly.batch.conftest import run_cli
from tests.conftest import make_tabular

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def test_score_se_column_is_the_scorers(sensors_bundle: Path, tmp_path: Path) -> None:
    cols = make_tabular(300, seed=2, anomalies=10)
    src = tmp_path / "rows.csv"
    pacsv.write_csv(pa.table(cols), src)
    out = tmp_path / "scores.parquet"
    score_path(sensors_bundle, src, out, ScoreOptions(score_se=True, progress=False))
    table = pq.read_table(out)
    assert table.column_names == ["row", "score", "score_se", "p_value", "is_anomaly"]
    want = Scorer(sensors_bundle).score_rows(table_columns(read_table(src)))
    assert want.score_se is not None
    np.testing.assert_allclose(table.column("score_se").to_numpy(), want.score_se, rtol=1e-6)
    assert np.all(table.column("score_se").to_numpy() > 0)


def test_no_estimate_is_an_empty_cell(sensors_bundle: Path, tmp_path: Path) -> None:
    cols = make_tabular(20, seed=3)
    src = tmp_path / "rows.csv"
    pacsv.write_csv(pa.table(cols), src)
    run_cli("score", sensors_bundle, src, "--out", tmp_path / "l1.csv", "--score-se",
            "--mc-samples", "1", "--quiet")
    l1 = pacsv.read_csv(tmp_path / "l1.csv")
    assert l1.column("score_se").null_count == 20  # one draw: no spread to estimate
    run_cli("score", GOLDEN / "sensors", GOLDEN / "sensors_rows.csv", "--out",
            tmp_path / "old.csv", "--score-se", "--quiet")
    old = pacsv.read_csv(tmp_path / "old.csv")
    assert old.column("score_se").null_count == old.num_rows > 0  # graph without draws
