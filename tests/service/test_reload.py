"""Hot reload: new versions are picked up (admin endpoint or polling) under live traffic with
zero failed requests; a bundle that fails to load keeps the old version serving and is
reported in the log, the metrics and the response."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import (
    API_KEY,
    AUTH,
    Server,
    TrainedBundles,
    make_repo,
    metric_value,
    start_server,
)


@pytest.fixture(scope="module")
def reload_server(bundles: TrainedBundles, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("server-reload")
    repo = make_repo(bundles, root / "models")
    srv = start_server(repo, root, "--api-key", API_KEY, "--max-queue-delay-us", "1000")
    yield srv, repo
    srv.stop()


async def _traffic_during(url: str, row: dict[str, float],
                          steps: list[Any]) -> tuple[list[tuple[int, Any]], list[Any]]:
    """Six clients score continuously while ``steps`` (callables returning an awaitable or
    None) run one after another, 0.3 s apart. Returns (status, version) per request and the
    steps' results."""
    stop = asyncio.Event()
    seen: list[tuple[int, Any]] = []
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
        async def worker() -> None:
            while not stop.is_set():
                r = await client.post("/v1/models/cancer/score", json={"rows": [row]})
                version = r.json()["results"][0]["version"] if r.status_code == 200 else None
                seen.append((r.status_code, version))

        workers = [asyncio.create_task(worker()) for _ in range(6)]
        outcomes = []
        try:
            await asyncio.sleep(0.3)
            for step in steps:
                result = step(client)
                outcomes.append(await result if result is not None else None)
                await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.gather(*workers)
    return seen, outcomes


def test_reload_under_traffic_loses_no_request(reload_server: tuple[Server, Path],
                                               bundles: TrainedBundles) -> None:
    server, repo = reload_server

    def add_v2(client: httpx.AsyncClient) -> Any:
        shutil.copytree(bundles.cancer, repo / "cancer" / "2")
        return client.post("/v1/models/cancer/reload")

    def drop_v1(client: httpx.AsyncClient) -> Any:
        shutil.rmtree(repo / "cancer" / "1")
        return client.post("/v1/models/cancer/reload")

    def force_v2(client: httpx.AsyncClient) -> Any:
        return client.post("/v1/models/cancer/reload?force=true")

    seen, (added, dropped, forced) = asyncio.run(
        _traffic_during(server.url, bundles.cancer_rows[0], [add_v2, drop_v1, force_v2]))
    assert added.status_code == 200, added.text
    assert added.json()["loaded"] == [2] and added.json()["serving"] == [1, 2]
    assert dropped.json()["unloaded"] == [1] and dropped.json()["serving"] == [2]
    assert forced.json()["loaded"] == [2]
    statuses = [s for s, _ in seen]
    assert len(seen) > 30
    assert statuses.count(200) == len(seen), f"failed requests: {set(statuses)}"
    versions = [v for _, v in seen]
    assert 1 in versions and 2 in versions
    assert versions[-1] == 2
    with server.client(headers=AUTH) as c:
        listed = c.get("/v1/models").json()["models"]
        text = c.get("/metrics").text
        # the unloaded version's series go once its last requests are counted (issue 14)
        deadline = time.monotonic() + 10
        while _series(text, model="cancer", version="1") and time.monotonic() < deadline:
            time.sleep(0.1)
            text = c.get("/metrics").text
    cancer = next(m for m in listed if m["name"] == "cancer")
    assert [v["version"] for v in cancer["versions"]] == [2]
    assert _series(text, model="cancer", version="1") == []
    assert metric_value(text, "anomaly_model_info", model="cancer", version="2") == 1
    assert metric_value(text, "anomaly_requests_total", model="cancer", version="2",
                        outcome="ok") > 0
    assert metric_value(text, "anomaly_model_last_reload_timestamp_seconds",
                        model="cancer") > time.time() - 60


def _series(text: str, **labels: str) -> list[str]:
    """The sample names of every series whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    return [s.name for f in text_string_to_metric_families(text) for s in f.samples
            if all(s.labels.get(k) == v for k, v in labels.items())]


def test_failed_load_keeps_old_version_and_is_reported(reload_server: tuple[Server, Path],
                                                       bundles: TrainedBundles) -> None:
    server, repo = reload_server
    row = bundles.cancer_rows[1]
    with server.client(headers=AUTH) as c:
        c.post("/v1/models/cancer/reload")  # whatever the previous test left: v2 serving
        failures_before = metric_value(c.get("/metrics").text,
                                       "anomaly_model_load_failures_total", model="cancer")
        # a new version whose model file was tampered with
        shutil.copytree(bundles.cancer, repo / "cancer" / "3")
        with (repo / "cancer" / "3" / "model.onnx").open("ab") as fh:
            fh.write(b"tampered")
        # and the serving version's manifest broken in place
        shutil.copytree(repo / "cancer" / "2", repo / "cancer" / ".2.bak")
        (repo / "cancer" / "2" / "bundle.json").write_text("{ not json")

        r = c.post("/v1/models/cancer/reload")
        assert r.status_code == 200, r.text  # an outcome to report, not a server error
        report = r.json()
        assert "error" not in report
        assert sorted(f["version"] for f in report["failed"]) == [2, 3]
        assert report["serving"] == [2]
        assert any("sha256" in f["error"] for f in report["failed"])

        scored = c.post("/v1/models/cancer/score", json={"rows": [row]})
        assert scored.status_code == 200 and scored.json()["version"] == 2
        listed = next(m for m in c.get("/v1/models").json()["models"]
                      if m["name"] == "cancer")
        assert [e["version"] for e in listed["load_errors"]] == [2, 3]
        text = c.get("/metrics").text
        assert metric_value(text, "anomaly_model_load_failures_total",
                            model="cancer") == failures_before + 2
        assert metric_value(text, "anomaly_model_ready", model="cancer") == 1

        # repair both: the next reload loads them and clears the errors
        shutil.rmtree(repo / "cancer" / "2")
        (repo / "cancer" / ".2.bak").rename(repo / "cancer" / "2")
        shutil.rmtree(repo / "cancer" / "3")
        shutil.copytree(bundles.cancer, repo / "cancer" / "3")
        fixed = c.post("/v1/models/cancer/reload")
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["serving"] == [2, 3] and 3 in fixed.json()["loaded"]
        assert c.post("/v1/models/cancer/score",
                      json={"rows": [row]}).json()["version"] == 3
        listed = next(m for m in c.get("/v1/models").json()["models"]
                      if m["name"] == "cancer")
        assert listed["load_errors"] == []
    entries = [json.loads(line) for line in server.log_lines()]
    errors = [e for e in entries if e["level"] == "error" and "failed" in e["msg"]]
    assert any(e.get("model") == "cancer" and e.get("version") == 3 for e in errors)


def test_polling_picks_up_new_versions_and_models(bundles: TrainedBundles,
                                                  tmp_path: Path) -> None:
    repo = make_repo(bundles, tmp_path / "models")
    server = start_server(repo, tmp_path, "--poll-interval-s", "0.3")
    try:
        shutil.copytree(bundles.cancer, repo / "cancer" / "5")
        shutil.copytree(bundles.digits, repo / "more-digits" / "1")
        deadline = time.monotonic() + 20
        models: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with server.client() as c:
                models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
            # "more-digits" is listed (not ready) as soon as its directory appears, before its
            # copy is complete: wait for it to be ready, not just listed
            if (models.get("cancer", {}).get("default_version") == 5
                    and models.get("more-digits", {}).get("ready")):
                break
            time.sleep(0.2)
        assert models["cancer"]["default_version"] == 5
        assert [v["version"] for v in models["cancer"]["versions"]] == [1, 5]
        assert models["more-digits"]["ready"]
    finally:
        server.stop()
