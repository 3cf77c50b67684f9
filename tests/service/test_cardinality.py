"""Metric labels come only from the models and versions loaded: thousands of requests naming
versions that are not loaded (with and without the API key, on /v1 and /v2) add no series of
their own, and a version's series go when it is unloaded (tests/service/test_reload.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.service.conftest import API_KEY, AUTH, Server, TrainedBundles, make_repo, start_server

X30 = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]}


@pytest.fixture(scope="module")
def keyed_server(bundles: TrainedBundles, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server-cardinality")
    srv = start_server(make_repo(bundles, root / "models"), root, "--api-key", API_KEY,
                       "--no-access-log")
    yield srv
    srv.stop()


def _series(text: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, tuple(sorted(s.labels.items())))
            for f in text_string_to_metric_families(text) for s in f.samples]


def _unknown_versions(c: httpx.Client, start: int, n: int, row: dict[str, float]) -> None:
    """n requests naming versions start, start+1, ... (none loaded): v2 path and v1 query,
    every other one without the key."""
    for i in range(start, start + n):
        headers = AUTH if i % 2 else {}
        if i % 4 < 2:
            r = c.post(f"/v2/models/cancer/versions/{i}/infer", json=X30, headers=headers)
        else:
            r = c.post(f"/v1/models/cancer/score?version={i}", json={"rows": [row]},
                       headers=headers)
        assert r.status_code == (404 if i % 2 else 401), r.text


def test_unknown_versions_add_no_series(keyed_server: Server, bundles: TrainedBundles) -> None:
    row = bundles.cancer_rows[0]
    with keyed_server.client() as c:
        assert c.post("/v1/models/cancer/score", json={"rows": [row]},
                      headers=AUTH).status_code == 200
        _unknown_versions(c, 1000, 200, row)
        first = c.get("/metrics").text
        _unknown_versions(c, 5000, 2000, row)
        after = c.get("/metrics").text
    # every version label is a loaded version or the one bounded value for "none"
    versions = {dict(labels).get("version") for _, labels in _series(after)} - {None}
    assert versions == {"1", ""}, versions
    # 2,000 more unknown versions (401s and 404s) change no series, only counts
    assert set(_series(after)) == set(_series(first))
    assert len(after.splitlines()) == len(first.splitlines())
    assert len(after) < 2 * len(first)
