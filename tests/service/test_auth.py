"""With an API key set, health, readiness, server metadata and the docs stay open; model
internals (column means and stds, thresholds, configs, statistics) and scoring need the key;
/metrics needs its own token when one is set, and neither secret opens the other's endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service.conftest import API_KEY, AUTH, Server, TrainedBundles, make_repo, start_server

METRICS_TOKEN = "metrics-token-7c1e"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
X30 = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]}

OPEN = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/v2"), ("GET", "/v2/health/live"),
        ("GET", "/v2/health/ready"), ("GET", "/v2/models/cancer/ready"),
        ("GET", "/v2/models/cancer/versions/1/ready"), ("GET", "/openapi.json"),
        ("GET", "/docs")]
NEEDS_KEY = [("GET", "/v1/models"), ("GET", "/v2/models/cancer"),
             ("GET", "/v2/models/cancer/versions/1"), ("GET", "/v2/models/cancer/config"),
             ("GET", "/v2/models/stats"), ("GET", "/v2/models/cancer/stats"),
             ("POST", "/v2/repository/index"), ("POST", "/v1/models/cancer/reload"),
             ("POST", "/v2/models/cancer/infer"), ("POST", "/v1/models/cancer/score")]


@pytest.fixture(scope="module")
def two_secrets_server(bundles: TrainedBundles, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server-auth")
    srv = start_server(make_repo(bundles, root / "models"), root, "--api-key", API_KEY,
                       "--no-access-log", env={"ANOMALY_METRICS_TOKEN": METRICS_TOKEN})
    yield srv
    srv.stop()


def test_open_endpoints_stay_open(two_secrets_server: Server) -> None:
    with two_secrets_server.client() as c:
        for method, path in OPEN:
            assert c.request(method, path).status_code == 200, path


def test_model_internals_and_scoring_need_the_key(two_secrets_server: Server,
                                                  bundles: TrainedBundles) -> None:
    bodies = {"/v2/models/cancer/infer": X30,
              "/v1/models/cancer/score": {"rows": [bundles.cancer_rows[0]]}}
    with two_secrets_server.client() as c:
        for method, path in NEEDS_KEY:
            body = bodies.get(path)
            for headers in ({}, SCRAPER, {"Authorization": "Bearer wrong"}):
                r = c.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert "mean" not in r.text and "threshold" not in r.text
            ok = c.request(method, path, json=body, headers=AUTH)
            assert ok.status_code == 200, (path, ok.text)
        columns = c.get("/v1/models", headers=AUTH).json()["models"][0]["versions"][0][
            "input"]["columns"]
    assert {"mean", "std"} <= set(columns[0])  # what the key protects


def test_metrics_need_their_own_token(two_secrets_server: Server) -> None:
    with two_secrets_server.client() as c:
        assert c.get("/metrics").status_code == 401
        wrong = c.get("/metrics", headers=AUTH)  # the API key is not the metrics token
        assert wrong.status_code == 401 and "metrics token" in wrong.json()["error"]
        scraped = c.get("/metrics", headers=SCRAPER)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert "anomaly_model_ready" in scraped.text
