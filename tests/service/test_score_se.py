"""The v1 API's optional ``score_se`` (``?score_se=true``): a number for bundles with
per-draw outputs, null when L = 1 and for bundles from before it existed; absent unless
asked for."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import make_tabular

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_score_se_field(tmp_path: Path) -> None:
    from tests.service.conftest import start_server
    from training.pipeline import tabular_config, train_tabular

    cols = make_tabular(1500, seed=0)
    cols.pop("is_anomaly")
    repo = tmp_path / "models"
    train_tabular(cols, repo / "new" / "1", "new",
                  tabular_config(epochs=4, target_fpr=0.05, progress=False))
    shutil.copytree(GOLDEN / "sensors", repo / "old" / "1")
    rows = [{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}
            for i in range(3)]
    server = start_server(repo, tmp_path)
    try:
        with server.client() as client:
            new = client.post("/v1/models/new/score?score_se=true",
                              json={"rows": rows}).json()["results"]
            plain = client.post("/v1/models/new/score", json={"rows": rows}).json()["results"]
            one = client.post("/v1/models/new/score?mc_samples=1&score_se=true",
                              json={"rows": rows}).json()["results"]
            old_rows = [{**r, "site": "a"} for r in rows]
            old = client.post("/v1/models/old/score?score_se=true",
                              json={"rows": old_rows}).json()
    finally:
        server.stop()
    assert all(r["score_se"] > 0 for r in new)
    assert all("score_se" not in r for r in plain)
    assert all(r["score_se"] is None for r in one)
    assert all(r["score_se"] is None for r in old["results"])
