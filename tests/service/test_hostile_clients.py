"""Clients that misbehave at the connection level: hanging up before the body is complete,
or stalling mid-body. Neither may page anyone (a server error) or hold the model's queue
capacity and version lease forever."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.service.conftest import (
    API_KEY,
    AUTH,
    Server,
    TrainedBundles,
    cancer_table,
    make_repo,
    metric_value,
    start_server,
)

CANCER = "/v1/models/cancer/score"


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(server: Server) -> None:
    """A client that closes its connection before its whole body arrived (a flaky network, a
    load balancer's timeout, a hostile client) is counted as a client error and logged as 499:
    it must not feed the server-error alert (deploy/prometheus/alerts.yml)."""
    url = urlsplit(server.url)
    body = b'{"rows": [{"mean_radius": 14.0}]}'
    head = (f"POST {CANCER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {API_KEY}\r\nX-Request-ID: hangup-test\r\n"
            f"Content-Length: {len(body) + 100}\r\n\r\n").encode()

    def outcomes() -> tuple[float, float]:
        with server.client(headers=AUTH) as c:
            text = c.get("/metrics").text
        return (metric_value(text, "anomaly_requests_total", model="cancer",
                             outcome="client_error"),
                metric_value(text, "anomaly_requests_total", model="cancer",
                             outcome="server_error"))

    client_before, server_before = outcomes()
    for _ in range(3):
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall(head + body)  # 100 bytes short of what Content-Length promises
            time.sleep(0.1)
    deadline = time.monotonic() + 10
    while outcomes()[0] < client_before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    client_after, server_after = outcomes()
    assert client_after == client_before + 3
    assert server_after == server_before
    # and on a route FastAPI dispatches (the Triton repository extension reads a body too)
    index = (f"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
             f"{API_KEY}\r\nX-Request-ID: hangup-index\r\nContent-Length: 50\r\n\r\n{{")
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(index.encode())
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while (time.monotonic() < deadline
           and not any("hangup-index" in line for line in server.log_lines())):
        time.sleep(0.05)
    logged = [json.loads(line) for line in server.log_lines() if "hangup-" in line]
    access = [e for e in logged if e.get("logger") == "service.access"]
    assert [e["status"] for e in access if e["request_id"] == "hangup-test"] == [499] * 3
    assert [e["status"] for e in access if e["request_id"] == "hangup-index"] == [499]
    assert not any(e.get("level") == "error" for e in logged)  # no "unhandled error" trace
    assert not any("ClientDisconnect" in line for line in server.log_lines())
    names, x, _ = cancer_table()
    with server.client(headers=AUTH) as c:  # and it keeps serving
        ok = c.post(CANCER, json={"rows": [dict(zip(names, x[0].tolist(), strict=True))]})
    assert ok.status_code == 200, ok.text


def test_a_stalled_body_gets_408_and_frees_its_place(bundles: TrainedBundles,
                                                      tmp_path: Path) -> None:
    """A client that sends headers and part of its body, then nothing (without closing), is
    answered 408 once ``body_timeout_s`` has passed, and its connection is closed; the model
    version it leased can then be swapped, and other requests are served meanwhile."""
    srv = start_server(make_repo(bundles, tmp_path / "models"), tmp_path,
                       "--body-timeout-s", "1", "--max-queue-size", "2")
    try:
        url = urlsplit(srv.url)
        body = b'{"rows": [{"mean_radius": 14.0}]}'
        head = (f"POST {CANCER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-Request-ID: stalled-body\r\nContent-Length: {len(body) + 100}\r\n\r\n")
        stalled = []
        for _ in range(2):  # as many as the queue holds: without the deadline, a 503 wall
            sock = socket.create_connection((url.hostname, url.port), timeout=10)
            sock.sendall(head.encode() + body)
            stalled.append(sock)
        t0 = time.monotonic()
        answers = []
        for sock in stalled:
            data = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                data += chunk
            answers.append(data)
            sock.close()
        waited = time.monotonic() - t0
        for data in answers:
            assert data.startswith(b"HTTP/1.1 408"), data[:200]
            assert b"connection: close" in data.lower()
            assert b"did not arrive within 1 s" in data
        assert 0.9 <= waited < 5, waited
        names, x, _ = cancer_table()
        with srv.client() as c:  # the queue's places are free again
            ok = c.post(CANCER, json={"rows": [dict(zip(names, x[0].tolist(), strict=True))]})
            text = c.get("/metrics").text
        assert ok.status_code == 200, ok.text
        assert metric_value(text, "anomaly_requests_total", model="cancer",
                            outcome="client_error") == 2
        logged = [json.loads(line) for line in srv.log_lines() if "stalled-body" in line]
        assert [e["status"] for e in logged if e.get("logger") == "service.access"] == [408] * 2
    finally:
        srv.stop()
    assert not any("Traceback" in line or "destroyed but it is pending" in line
                   for line in srv.log_lines())
