"""The scoring endpoints' short way past FastAPI's stack (service/hotpath.py) behaves like the
full stack: same error mapping, request ids, body limit and fallback for everything else."""

from __future__ import annotations

import logging

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from starlette.responses import Response

from anomaly.errors import InputError
from service import errors
from service.errors import OverloadedError
from service.hotpath import HotRoute, ServiceApp
from service.state import json_response


async def endpoint(request: Request, name: str) -> Response:
    body = await request.body()
    if name == "bad":
        raise InputError("column 'x' is missing; send every column of the model's schema")
    if name == "busy":
        raise OverloadedError("queue full; retry", 2.5)
    if name == "bug":
        raise RuntimeError("a bug")
    return json_response({"name": name, "bytes": len(body), "hot": True})


def make_app() -> ServiceApp:
    app = ServiceApp(hot_routes=[HotRoute("/v1/models/{name}/score", endpoint)],
                     max_body_bytes=100, access_log=False, body_timeout_s=60.0)
    errors.install(app)

    @app.post("/v1/models/{name}/score")
    async def documented(name: str) -> dict[str, object]:  # only for the schema
        return {"hot": False}

    @app.get("/v1/models/{name}/score")
    async def other_method(name: str) -> dict[str, object]:
        return {"hot": False, "method": "GET"}

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def test_hot_route_serves_posts_with_request_id(client: TestClient) -> None:
    r = client.post("/v1/models/m1/score", content=b"12345",
                    headers={"X-Request-ID": "abc-1"})
    assert r.status_code == 200
    assert r.json() == {"name": "m1", "bytes": 5, "hot": True}
    assert r.headers["x-request-id"] == "abc-1"
    generated = client.post("/v1/models/m1/score", content=b"").headers["x-request-id"]
    assert generated and generated != "abc-1"


def test_other_methods_and_paths_go_through_fastapi(client: TestClient) -> None:
    assert client.get("/v1/models/m1/score").json() == {"hot": False, "method": "GET"}
    assert client.post("/v1/models/a/b/score").status_code == 404
    assert "/v1/models/{name}/score" in client.get("/openapi.json").json()["paths"]


def test_errors_map_as_in_the_full_stack(client: TestClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    r = client.post("/v1/models/bad/score", content=b"{}")
    assert r.status_code == 422
    assert r.json() == {"error": "column 'x' is missing; send every column of the model's "
                                 "schema"}
    r = client.post("/v1/models/busy/score", content=b"{}")
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    with caplog.at_level(logging.ERROR, logger="service.errors"):
        r = client.post("/v1/models/bug/score", content=b"{}")
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    assert r.json() == {"error": f"internal error (request id {rid}); see the service log"}
    assert "a bug" not in r.text  # no traceback or message of the bug to the caller
    assert any(rec.exc_info and "a bug" in str(rec.exc_info[1]) for rec in caplog.records)


def test_body_limit_applies(client: TestClient) -> None:
    r = client.post("/v1/models/m1/score", content=b"x" * 101)
    assert r.status_code == 413
    assert "over the limit of 100 bytes" in r.json()["error"]


def test_hot_route_needs_one_name_segment() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        HotRoute("/v1/models/score", endpoint)


def test_fastapi_opentelemetry_is_off_unless_asked() -> None:
    from service.config import Settings
    from service.main import create_app

    off = create_app(Settings(models="unused"))
    on = create_app(Settings(models="unused", otel=True))
    # FastAPI's own per-request check (private, but it is what the setting controls)
    assert off._native_telemetry.enabled() is False
    assert on._telemetry.get("tracing", True) and on._telemetry.get("metrics", True)
