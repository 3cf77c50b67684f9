"""A model trained on a table with gaps scores gaps over HTTP as the library does: a JSON
null, a blank CSV field or a missing marker (``?``, ``NA``, ``-``) in a column that had gaps
in training is filled (200, the offline score of the row with a null there); in a column that
had none it is still a 422 naming the column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from anomaly.inference import Scorer
from tests.service.conftest import Server, cancer_table, start_server

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def gaps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    from training.pipeline import tabular_config, train_tabular

    root = tmp_path_factory.mktemp("gaps")
    names, x, malignant = cancer_table()
    benign = {n: x[~malignant, j].copy() for j, n in enumerate(names[:8])}
    benign["mean_radius"][::7] = np.nan
    train_tabular(benign, root / "models" / "gaps" / "1", "gaps",
                  tabular_config(epochs=3, target_fpr=0.05, progress=False))
    server = start_server(root / "models", root)
    yield server, root / "models" / "gaps" / "1"
    server.stop()


def test_gaps_score_over_http_as_offline(gaps_server: tuple[Server, Path]) -> None:
    server, bundle = gaps_server
    names, x, _ = cancer_table()
    rows = [dict(zip(names[:8], map(float, r), strict=True)) for r in x[:4, :8]]
    rows[0]["mean_radius"] = None  # type: ignore[assignment]
    for row, marker in zip(rows[1:], ("?", "NA", "-"), strict=True):
        row["mean_radius"] = marker  # type: ignore[assignment]
    offline = Scorer(bundle).score_rows([{**r, "mean_radius": None} for r in rows]).scores
    csv = "\n".join([",".join(names[:8])] + [
        ",".join("" if v is None else v if isinstance(v, str) else repr(v)
                 for v in r.values()) for r in rows]) + "\n"
    with server.client() as c:
        as_json = c.post("/v1/models/gaps/score", json={"rows": rows})
        as_csv = c.post("/v1/models/gaps/score", content=csv.encode(),
                        headers={"Content-Type": "text/csv"})
        no_gaps_there = c.post("/v1/models/gaps/score",
                               json={"rows": [{**rows[1], "mean_texture": None}]})
    for r in (as_json, as_csv):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose([v["score"] for v in r.json()["results"]], offline,
                                   RTOL, ATOL)
    assert np.isfinite(offline).all()
    assert no_gaps_there.status_code == 422
    assert "column 'mean_texture': value is missing" in no_gaps_there.text


def test_a_large_csv_body_is_parsed_off_the_event_loop_as_offline(
        gaps_server: tuple[Server, Path]) -> None:
    """Bodies above 256 KiB are parsed on a worker thread: the same scores as offline, and
    its errors (here too many rows) still map to their status."""
    server, bundle = gaps_server
    names, x, _ = cancer_table()
    big = np.resize(x[:, :8], (4000, 8)) * (1 + np.linspace(0, 1e-3, 4000))[:, None]
    header = ",".join(names[:8])
    body = "\n".join([header] + [",".join(map(repr, map(float, r))) for r in big]) + "\n"
    assert len(body) > 256 * 1024
    offline = Scorer(bundle).score_rows(
        [dict(zip(names[:8], map(float, r), strict=True)) for r in big]).scores
    too_many = "\n".join([header] + [",".join(map(repr, map(float, r)))
                                     for r in np.resize(big, (5000, 8))]) + "\n"
    with server.client() as c:
        r = c.post("/v1/models/gaps/score", content=body.encode(),
                   headers={"Content-Type": "text/csv"})
        over = c.post("/v1/models/gaps/score", content=too_many.encode(),
                      headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([v["score"] for v in r.json()["results"]], offline, RTOL, ATOL)
    assert over.status_code == 413 and "5000 rows in one request" in over.text
