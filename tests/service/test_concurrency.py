"""Dynamic batching under concurrency: 200 concurrent single-row requests are coalesced
(batch-size histogram shows batches > 1) and still score exactly as offline, each with its own
seed; a full queue answers 503 with Retry-After instead of growing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from anomaly.inference import Scorer
from tests.service.conftest import (
    AUTH,
    Server,
    TrainedBundles,
    make_repo,
    metric_value,
    start_server,
)
from tests.service.test_http import ATOL, RTOL


async def _concurrent_singles(url: str, rows: list[dict[str, float]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(rows), max_keepalive_connections=len(rows))
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits,
                                 timeout=60) as client:
        return await asyncio.gather(*(
            client.post(f"/v1/models/cancer/score?seed={i}", json={"rows": [row]})
            for i, row in enumerate(rows)))


def test_200_concurrent_requests_batch_and_match_offline(server: Server,
                                                         bundles: TrainedBundles) -> None:
    rows = bundles.cancer_rows[:200]
    with server.client() as c:
        before = c.get("/metrics").text
    responses = asyncio.run(_concurrent_singles(server.url, rows))
    with server.client() as c:
        after = c.get("/metrics").text
    assert [r.status_code for r in responses] == [200] * 200, \
        [r.text for r in responses if r.status_code != 200][:3]
    served = np.array([r.json()["results"][0]["score"] for r in responses])
    # offline: the same rows in one call, row i with seed i
    offline = Scorer(bundles.cancer).score_rows(rows, seeds=list(range(200)))
    np.testing.assert_allclose(served, offline.scores, RTOL, ATOL)
    # ... and seeds matter, so the equality above is not vacuous
    same_seed = Scorer(bundles.cancer).score_rows(rows)
    assert np.abs(same_seed.scores - offline.scores).max() > 1e-3

    def delta(name: str, **labels: str) -> float:
        return (metric_value(after, name, model="cancer", version="1", **labels)
                - metric_value(before, name, model="cancer", version="1", **labels))

    calls = delta("anomaly_batch_size_count")
    singles = delta("anomaly_batch_size_bucket", le="1.0")
    assert delta("anomaly_batch_size_sum") == 200
    assert calls < 200 and calls - singles > 0, (calls, singles)
    assert delta("anomaly_samples_scored_total") == 200
    assert delta("anomaly_requests_total", outcome="ok") == 200
    assert delta("anomaly_queue_wait_seconds_count") == 200
    assert delta("anomaly_request_duration_seconds_count") == 200


@pytest.fixture(scope="module")
def tiny_queue_server(bundles: TrainedBundles, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[Server]:
    """One sample may wait, for up to 1 s; configured through ANOMALY_* only and started
    as `uvicorn service.main:app`."""
    root = tmp_path_factory.mktemp("server-tiny-queue")
    repo = make_repo(bundles, root / "models")
    env = {"ANOMALY_MAX_QUEUE_SIZE": "1", "ANOMALY_MAX_QUEUE_DELAY_US": "1000000",
           "ANOMALY_RETRY_AFTER_S": "2"}
    srv = start_server(repo, root, launcher="uvicorn", env=env)
    yield srv
    srv.stop()


async def _overload(url: str, row: dict[str, float]) -> tuple[httpx.Response, httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        first = asyncio.create_task(client.post("/v1/models/cancer/score",
                                                json={"rows": [row]}))
        for _ in range(200):  # until the first sample waits in the queue
            depth = metric_value((await client.get("/metrics")).text, "anomaly_queue_depth",
                                 model="cancer")
            if depth == 1:
                break
            await asyncio.sleep(0.005)
        second = await client.post("/v1/models/cancer/score", json={"rows": [row]})
        return await first, second


def test_full_queue_answers_503_with_retry_after(tiny_queue_server: Server,
                                                 bundles: TrainedBundles) -> None:
    started = time.monotonic()
    first, second = asyncio.run(_overload(tiny_queue_server.url, bundles.cancer_rows[0]))
    assert first.status_code == 200, first.text
    assert second.status_code == 503, second.text
    assert second.headers["retry-after"] == "2"
    assert "queued" in second.json()["error"]
    assert time.monotonic() - started < 10
    with tiny_queue_server.client() as c:
        text = c.get("/metrics").text
        models = c.get("/v1/models").json()["models"]
    assert metric_value(text, "anomaly_requests_total", model="cancer",
                        outcome="rejected") == 1
    assert {m["name"] for m in models} == {"cancer", "digits"}  # env-configured repository


def test_settings_from_environment_reach_the_app(tiny_queue_server: Server) -> None:
    """No API key configured on this server: scoring is open."""
    with tiny_queue_server.client() as c:
        r = c.post("/v2/models/cancer/infer", json={"inputs": [
            {"name": "x", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]})
    assert r.status_code == 200, r.text


async def _health_during(url: str, path: str, body: dict[str, object]
                         ) -> tuple[int, float, float]:
    """(status, seconds, slowest health check) of one heavy explained request, while a
    second connection polls /v2/health/live every 10 ms."""
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as client:
        slowest, done = 0.0, False

        async def poll() -> None:
            nonlocal slowest
            while not done:
                t0 = time.perf_counter()
                await client.get("/v2/health/live")
                slowest = max(slowest, time.perf_counter() - t0)
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll())
        await asyncio.sleep(0.1)
        t0 = time.perf_counter()
        r = await client.post(path, json=body)
        took = time.perf_counter() - t0
        done = True
        await poller
        return r.status_code, took, slowest


def test_explanations_do_not_hold_the_event_loop(server: Server,
                                                 bundles: TrainedBundles) -> None:
    """The full graph of an explanation runs off the event loop: inline, 500 rows at
    L = 1024 held every other request (health checks too) for most of the request."""
    rows = (bundles.cancer_rows * 3)[:300]  # within the server's 256 KiB body limit
    x = Scorer(bundles.cancer).tabular.encode_rows(rows)
    v2 = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                      "data": np.round(x, 5).reshape(-1).tolist()}],
          "outputs": [{"name": "feature_scores"}], "parameters": {"mc_samples": 1024}}
    for path, body in (("/v1/models/cancer/score?explain=true&mc_samples=1024",
                        {"rows": rows}), ("/v2/models/cancer/infer", v2)):
        status, took, slowest = asyncio.run(_health_during(server.url, path, body))
        assert status == 200
        assert slowest < 0.3 * took, (path, took, slowest)
