"""Every kind of bad request gets a 4xx JSON ``{"error": "..."}`` with a useful message and
never a stack trace; the server keeps serving afterwards."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.conftest import AUTH, Server, TrainedBundles, metric_value, png_bytes

CANCER = "/v1/models/cancer/score"
DIGITS = "/v1/models/digits/score"
INFER = "/v2/models/cancer/infer"


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _binary_header(batch: int) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": [batch, 30], "datatype": "FP32",
                                   "parameters": {"binary_data_size": batch * 120}}]}).encode()


def _binary_infer(x: np.ndarray) -> bytes:
    """An OIP request with x (B, 30) float32 as a binary tensor."""
    return _binary_header(x.shape[0]) + x.astype("<f4").tobytes()


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    message: str  # a fragment the error message must contain (case-insensitive)
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    auth: dict[str, str] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    headers: dict[str, str] | None = None


def _row(bundles: TrainedBundles, **override: Any) -> dict[str, Any]:
    return {**bundles.cancer_rows[0], **override}


def cases(b: TrainedBundles) -> list[Case]:
    row = b.cancer_rows[0]
    x30 = [0.0] * 30
    good_png = png_bytes(b.digit_images[0])
    return [
        Case("no api key", "POST", CANCER, 401, "missing api key", json={"rows": [row]},
             auth={}),
        Case("wrong api key", "POST", CANCER, 401, "wrong api key", json={"rows": [row]},
             auth={"Authorization": "Bearer nope"}),
        Case("admin reload without key", "POST", "/v1/models/cancer/reload", 401, "api key",
             auth={}),
        Case("unknown model", "POST", "/v1/models/nope/score", 404, "no model named 'nope'",
             json={"rows": [row]}),
        Case("unknown version", "POST", CANCER + "?version=9", 404, "no version 9",
             json={"rows": [row]}),
        Case("unsupported content type", "POST", CANCER, 415, "unsupported content-type",
             content=b"hello", content_type="text/plain"),
        Case("malformed json", "POST", CANCER, 422, "not valid json", content=b"{rows: [",
             content_type="application/json"),
        Case("json without rows", "POST", CANCER, 422, "expected a json object",
             json={"data": []}),
        Case("rows not a list", "POST", CANCER, 422, "must be a list", json={"rows": 5}),
        Case("row not an object", "POST", CANCER, 422, "row 0 is not an object",
             json={"rows": [[1, 2]]}),
        Case("empty rows", "POST", CANCER, 422, "no rows", json={"rows": []}),
        Case("missing column", "POST", CANCER, 422, "missing column",
             json={"rows": [{"mean_radius": 1.0}]}),
        Case("non-numeric value", "POST", CANCER, 422, "is not a number",
             json={"rows": [_row(b, mean_area="big")]}),
        Case("null value", "POST", CANCER, 422, "value is missing",
             json={"rows": [_row(b, mean_area=None)]}),
        Case("overflowing number", "POST", CANCER, 422, "not valid json",
             content=b'{"rows": [{"mean_area": 1e999}]}', content_type="application/json"),
        Case("NaN literal (not JSON)", "POST", CANCER, 422, "not valid json",
             content=json.dumps({"rows": [_row(b, mean_area=float("nan"))]}).encode(),
             content_type="application/json"),
        Case("too many rows", "POST", CANCER, 413, "limit is 600",
             json={"rows": [{"a": 1}] * 601}),
        Case("body over the size limit", "POST", CANCER, 413, "over the limit",
             content=b"x" * 300_000, content_type="application/json"),
        Case("empty csv", "POST", CANCER, 422, "csv body is empty", content=b"",
             content_type="text/csv"),
        Case("csv header only", "POST", CANCER, 422, "no rows", content=b"a,b\n",
             content_type="text/csv"),
        Case("csv ragged", "POST", CANCER, 422, "cannot parse the csv",
             content=b"a,b\n1,2,3\n", content_type="text/csv"),
        Case("rows to an image model", "POST", DIGITS, 422, "scores images",
             json={"rows": [row]}),
        Case("image to a tabular model", "POST", CANCER, 422, "scores rows",
             content=good_png, content_type="image/png"),
        Case("not an image", "POST", DIGITS, 422, "could not be decoded",
             content=b"GIF89a-not-really", content_type="image/png"),
        Case("empty image", "POST", DIGITS, 422, "empty", content=b"",
             content_type="image/png"),
        Case("image over the pixel limit", "POST", DIGITS, 413, "over the limit of 4096",
             content=png_bytes(np.zeros((80, 80), np.uint8)), content_type="image/png"),
        Case("decompression bomb", "POST", DIGITS, 413, "too large",
             content=_png_header_only(100_000, 100_000), content_type="image/png"),
        Case("multipart without files", "POST", DIGITS, 422, "no files",
             files=None, content=b"--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"
             b"1\r\n--xx--\r\n", content_type="multipart/form-data; boundary=xx"),
        Case("multipart garbage", "POST", DIGITS, 400, "",
             content=b"garbage", content_type="multipart/form-data"),
        Case("bad query parameter", "POST", CANCER + "?explain=maybe", 422, "explain",
             json={"rows": [row]}),
        Case("mc_samples zero", "POST", CANCER + "?mc_samples=0", 422, "mc_samples",
             json={"rows": [row]}),
        Case("mc_samples over the limit", "POST", CANCER + "?mc_samples=100000", 422,
             "must be in [1, 1024]", json={"rows": [row]}),
        Case("negative seed", "POST", CANCER + "?seed=-1", 422, "seed",
             json={"rows": [row]}),
        Case("reload unknown model", "POST", "/v1/models/nope/reload", 404, "no model "
             "directory"),
        Case("unknown route", "GET", "/v1/nothing", 404, "not found"),
        Case("wrong method", "GET", CANCER, 405, "method not allowed"),
        Case("oip unknown model", "GET", "/v2/models/nope", 404, "no model named"),
        Case("oip not json", "POST", INFER, 422, "not valid json", content=b"[[",
             content_type="application/json"),
        Case("oip no inputs", "POST", INFER, 422, "inputs", json={"inputs": []}),
        Case("oip wrong shape", "POST", INFER, 422, "shape (batch >= 1, 30)",
             json={"inputs": [{"name": "x", "shape": [1, 29], "datatype": "FP32",
                               "data": x30[:29]}]}),
        Case("oip data length", "POST", INFER, 422, "values for shape",
             json={"inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP32",
                               "data": x30}]}),
        Case("oip bad datatype", "POST", INFER, 422, "datatype",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "BYTES",
                               "data": x30}]}),
        Case("oip strings as data", "POST", INFER, 422, "must be numbers",
             json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                               "data": ["a", "b"]}]}),
        Case("oip NaN literal", "POST", INFER, 422, "not valid json",
             content=json.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                             "datatype": "FP32",
                                             "data": [float("nan")] * 30}]}).encode(),
             content_type="application/json"),
        Case("oip NaN in a binary tensor", "POST", INFER, 422, "nan or infinite",
             content=_binary_infer(np.full((1, 30), np.nan, np.float32)),
             content_type="application/octet-stream",
             headers={"Inference-Header-Content-Length": str(len(_binary_header(1)))}),
        Case("oip header length too long", "POST", INFER, 422, "does not fit",
             content=b"{}", content_type="application/octet-stream",
             headers={"Inference-Header-Content-Length": "999"}),
        Case("oip unknown output", "POST", INFER, 422, "unknown output",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "data": x30}], "outputs": [{"name": "latent"}]}),
        Case("oip binary size mismatch", "POST", INFER, 422, "binary_data_size",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "parameters": {"binary_data_size": 7}}]}),
        Case("oip bad seed parameter", "POST", INFER, 422, "seed",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "data": x30}], "parameters": {"seed": "one"}}),
    ]


def _send(c: httpx.Client, case: Case) -> httpx.Response:
    headers = dict(AUTH if case.auth is None else case.auth) | (case.headers or {})
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    if case.files is not None:
        return c.request(case.method, case.path, files=case.files, headers=headers)
    if case.json is not None:
        return c.request(case.method, case.path, json=case.json, headers=headers)
    return c.request(case.method, case.path, content=case.content, headers=headers)


def test_bad_inputs(server: Server, bundles: TrainedBundles) -> None:
    table = cases(bundles)
    failures = []
    with server.client() as c:
        before = c.get("/metrics").text
        for case in table:
            r = _send(c, case)
            problem = _check(case, r)
            if problem:
                failures.append(f"{case.name}: {problem}")
        after = c.get("/metrics").text
        # still healthy, and the failures were counted by outcome
        assert c.post(CANCER, json={"rows": bundles.cancer_rows[:1]},
                      headers=AUTH).status_code == 200
    assert not failures, "\n".join(failures)

    def delta(outcome: str) -> float:
        return (metric_value(after, "anomaly_requests_total", model="cancer",
                             outcome=outcome)
                - metric_value(before, "anomaly_requests_total", model="cancer",
                               outcome=outcome))

    assert delta("unauthorized") == 2
    assert delta("client_error") >= 20
    assert delta("server_error") == 0


def _check(case: Case, r: httpx.Response) -> str | None:
    if r.status_code != case.status:
        return f"status {r.status_code}, expected {case.status}: {r.text[:300]}"
    if not r.headers.get("content-type", "").startswith("application/json"):
        return f"content-type {r.headers.get('content-type')}"
    body: Callable[[], Any] = r.json
    try:
        payload = body()
    except ValueError:
        return f"body is not JSON: {r.text[:200]}"
    if set(payload) - {"error"} or not isinstance(payload.get("error"), str):
        return f"body is not {{'error': str}}: {payload}"
    if case.message.lower() not in payload["error"].lower():
        return f"message {payload['error']!r} lacks {case.message!r}"
    if "Traceback" in r.text or 'File "' in r.text:
        return "stack trace in the response"
    if r.status_code == 401 and r.headers.get("www-authenticate") != "Bearer":
        return "401 without WWW-Authenticate: Bearer"
    return None


@pytest.mark.parametrize("auth", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}])
def test_v2_infer_needs_the_key_too(server: Server, auth: dict[str, str]) -> None:
    with server.client() as c:
        r = c.post(INFER, headers=auth, json={"inputs": [
            {"name": "x", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]})
    assert r.status_code == 401
    assert "api key" in r.json()["error"].lower()
