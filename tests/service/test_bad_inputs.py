"""Every kind of bad request gets a 4xx JSON ``{"error": "..."}`` with a useful message and
never a stack trace; the server keeps serving afterwards."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.conftest import (
    API_KEY,
    AUTH,
    Server,
    TrainedBundles,
    make_repo,
    metric_value,
    png_bytes,
    start_server,
)

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
        # options are query parameters: in the body they were ignored without a word
        Case("an option in the body", "POST", CANCER, 422,
             "'mc_samples' is a query parameter, not a body field: POST .../score?"
             "mc_samples=64", json={"rows": [row], "mc_samples": 64}),
        Case("a flag in the body", "POST", CANCER, 422, "score?explain=true",
             json={"explain": True, "rows": [row]}),
        Case("a misspelt query option", "POST", CANCER + "?mc_sample=64", 422,
             "unknown query parameter 'mc_sample' (did you mean 'mc_samples'?)",
             json={"rows": [row]}),
        Case("an unknown query parameter", "POST", CANCER + "?fast=1", 422,
             "unknown query parameter 'fast': this endpoint takes explain, "
             "ignore_unknown_columns, mc_samples", json={"rows": [row]}),
        Case("an unknown body key", "POST", CANCER, 422,
             "unknown key(s) ['request_id'] in the body", json={"rows": [row],
                                                                "request_id": "r-1"}),
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
        Case("gzip-encoded json body", "POST", CANCER, 415,
             "content-encoding 'gzip' is not supported",
             content=zlib.compress(json.dumps({"rows": [row]}).encode()),
             content_type="application/json", headers={"Content-Encoding": "gzip"}),
        Case("gzip-encoded csv body", "POST", CANCER, 415, "send the body uncompressed",
             content=zlib.compress(b"a,b\n1,2\n"), content_type="text/csv",
             headers={"Content-Encoding": "gzip"}),
        Case("empty csv", "POST", CANCER, 422, "csv body is empty", content=b"",
             content_type="text/csv"),
        Case("csv header only", "POST", CANCER, 422, "no rows",
             content=(",".join(row) + "\n").encode(), content_type="text/csv"),
        Case("csv without its header row", "POST", CANCER, 422,
             "first line is data, not a header (every name is a number): send the header",
             content=(",".join(map(str, row.values())) + "\n").encode() * 2,
             content_type="text/csv"),
        Case("csv with a name that differs by a space", "POST", CANCER, 422,
             "there is 'mean_radius ' for 'mean_radius': names must match exactly",
             content=(",".join(["mean_radius ", *list(row)[1:]]) + "\n"
                      + ",".join(map(str, row.values())) + "\n").encode(),
             content_type="text/csv"),
        Case("csv ragged", "POST", CANCER, 422, "cannot parse the csv",
             content=b"a,b\n1,2,3\n", content_type="text/csv"),
        Case("csv with a model column twice", "POST", CANCER, 422,
             "column name 'mean_area' appears 2 times in the csv header",
             content=(",".join([*row, "mean_area"]) + "\n"
                      + ",".join(map(str, [*row.values(), 1.0])) + "\n").encode(),
             content_type="text/csv"),
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
        Case("decompression bomb", "POST", DIGITS, 413, "over the limit of 4096 pixels",
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
        Case("repeated query parameter", "POST", CANCER + "?seed=1&explain=true&seed=2", 422,
             "query parameter seed is given 2 times (['1', '2']): give it once",
             json={"rows": [row]}),
        Case("reload unknown model", "POST", "/v1/models/nope/reload", 404, "no model "
             "directory"),
        Case("unknown route", "GET", "/v1/nothing", 404, "not found"),
        Case("wrong method", "GET", CANCER, 405, "method not allowed"),
        Case("oip unknown model", "GET", "/v2/models/nope", 404, "no model named"),
        Case("oip not json", "POST", INFER, 400, "not valid json", content=b"[[",
             content_type="application/json"),
        Case("oip no inputs", "POST", INFER, 400, "inputs", json={"inputs": []}),
        Case("oip wrong shape", "POST", INFER, 400, "expecting [-1, 30]",
             json={"inputs": [{"name": "x", "shape": [1, 29], "datatype": "FP32",
                               "data": x30[:29]}]}),
        Case("oip data length", "POST", INFER, 400, "values for shape",
             json={"inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP32",
                               "data": x30}]}),
        Case("oip bad datatype", "POST", INFER, 400, "unexpected datatype 'BYTES'",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "BYTES",
                               "data": x30}]}),
        Case("oip strings as data", "POST", INFER, 400, "must be numbers",
             json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                               "data": ["a", "b"]}]}),
        Case("oip NaN literal", "POST", INFER, 400, "not valid json",
             content=json.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                             "datatype": "FP32",
                                             "data": [float("nan")] * 30}]}).encode(),
             content_type="application/json"),
        Case("oip NaN in a binary tensor", "POST", INFER, 400, "nan or infinite",
             content=_binary_infer(np.full((1, 30), np.nan, np.float32)),
             content_type="application/octet-stream",
             headers={"Inference-Header-Content-Length": str(len(_binary_header(1)))}),
        Case("oip header length too long", "POST", INFER, 400, "does not fit",
             content=b"{}", content_type="application/octet-stream",
             headers={"Inference-Header-Content-Length": "999"}),
        Case("oip unknown output", "POST", INFER, 400, "unknown output",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "data": x30}], "outputs": [{"name": "latent"}]}),
        Case("oip binary size mismatch", "POST", INFER, 400, "binary_data_size",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "parameters": {"binary_data_size": 7}}]}),
        Case("oip bad seed parameter", "POST", INFER, 400, "seed",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "data": x30}], "parameters": {"seed": "one"}}),
        # strict by default (issue 14): what used to be guessed silently
        Case("rgb image to a grey model", "POST", DIGITS, 422,
             "is 8x8 in mode rgb; the model takes 8x8 8-bit greyscale (l) images",
             content=png_bytes(np.zeros((8, 8, 3), np.uint8)), content_type="image/png"),
        Case("image of another size", "POST", DIGITS, 422, "is 64x64 in mode l",
             content=png_bytes(np.zeros((64, 64), np.uint8)), content_type="image/png"),
        Case("thousands of unknown keys: a short message", "POST", CANCER, 422,
             "unknown column(s) ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9'] "
             "and 4,990 more: the model's columns are",
             json={"rows": [{**row, **{f"k{i}": i for i in range(5000)}}]}),
        Case("unknown json column", "POST", CANCER, 422,
             "unknown column(s) ['colour']", json={"rows": [_row(b, colour="red")]}),
        Case("json boolean in a numeric column", "POST", CANCER, 422,
             "row 0: column 'mean_area': true is a boolean",
             json={"rows": [_row(b, mean_area=True)]}),
        Case("unknown csv column", "POST", CANCER, 422, "unknown column(s) ['colour']",
             content=(",".join([*row, "colour"]) + "\n"
                      + ",".join([*map(repr, row.values()), "red"]) + "\n").encode(),
             content_type="text/csv"),
        Case("oip fp64 where fp32 is declared", "POST", INFER, 400,
             "unexpected datatype 'FP64' for inference input 'x', expecting FP32",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                               "data": x30}]}),
        Case("oip x of another shape with the same size", "POST", INFER, 400,
             "unexpected shape [1, 5, 6] for inference input 'x', expecting [-1, 30]",
             json={"inputs": [{"name": "x", "shape": [1, 5, 6], "datatype": "FP32",
                               "data": x30}]}),
        Case("oip unexpected input", "POST", INFER, 400, "unexpected inference input 'y'",
             json={"inputs": [{"name": "y", "shape": [1, 30], "datatype": "FP32",
                               "data": x30}]}),
        Case("oip seed of the wrong shape", "POST", INFER, 400,
             "unexpected shape [2] for inference input 'seed'",
             json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "data": x30},
                              {"name": "seed", "shape": [2], "datatype": "INT64",
                               "data": [1, 2]}]}),
        # model internals need the key (issue 14)
        Case("model listing without key", "GET", "/v1/models", 401, "missing api key",
             auth={}),
        Case("oip model metadata without key", "GET", "/v2/models/cancer", 401,
             "missing api key", auth={}),
        Case("oip model config without key", "GET", "/v2/models/cancer/config", 401,
             "missing api key", auth={}),
        Case("oip statistics without key", "GET", "/v2/models/stats", 401,
             "missing api key", auth={}),
        Case("oip repository index without key", "POST", "/v2/repository/index", 401,
             "missing api key", auth={}),
        Case("oip unload", "POST", "/v2/repository/models/cancer/unload", 409,
             "follow the repository on disk", json={"parameters": {}}),
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


def _lenient_requests(c: httpx.Client, b: TrainedBundles, query: str
                      ) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
    """An RGB image and a 64x64 one to the 8x8 grey model, a row with an extra column."""
    rgb = np.repeat(b.digit_images[0][:, :, None], 3, axis=2)
    big = np.kron(b.digit_images[0], np.ones((8, 8), np.uint8))  # (64, 64)
    return (c.post(DIGITS + query, content=png_bytes(rgb), headers=AUTH | {
                "Content-Type": "image/png"}),
            c.post(DIGITS + query, content=png_bytes(big), headers=AUTH | {
                "Content-Type": "image/png"}),
            c.post(CANCER + query, json={"rows": [_row(b, colour="red")]}, headers=AUTH))


def test_lenient_input_is_an_explicit_opt_in(server: Server, bundles: TrainedBundles,
                                             tmp_path: Path) -> None:
    """?resize=true / ?ignore_unknown_columns=true (or the settings) bring back the library's
    lenient behaviour: the same scores as Scorer, which resizes, converts and ignores."""
    from anomaly.inference import Scorer

    rgb = np.repeat(bundles.digit_images[0][:, :, None], 3, axis=2)
    big = np.kron(bundles.digit_images[0], np.ones((8, 8), np.uint8))
    offline = Scorer(bundles.digits).score_images([png_bytes(rgb), png_bytes(big)]).scores
    plain = Scorer(bundles.cancer).score_rows([bundles.cancer_rows[0]]).scores[0]
    with server.client() as c:
        opted = _lenient_requests(c, bundles, "?resize=true&ignore_unknown_columns=true")
    assert [r.status_code for r in opted] == [200, 200, 200], [r.text for r in opted]
    served = [r.json()["results"][0]["score"] for r in opted]
    np.testing.assert_allclose(served, [*offline, plain], rtol=1e-5, atol=1e-4)

    lenient = start_server(make_repo(bundles, tmp_path / "models"), tmp_path, "--api-key",
                           API_KEY, "--no-access-log",
                           env={"ANOMALY_RESIZE_IMAGES": "true",
                                "ANOMALY_IGNORE_UNKNOWN_COLUMNS": "true"})
    try:
        with lenient.client() as c:
            by_setting = _lenient_requests(c, bundles, "")
            overridden = _lenient_requests(c, bundles, "?resize=false"
                                           "&ignore_unknown_columns=false")
    finally:
        lenient.stop()
    assert [r.status_code for r in by_setting] == [200, 200, 200]
    assert [r.status_code for r in overridden] == [422, 422, 422]


def test_a_clients_long_values_are_not_echoed_back(server: Server,
                                                   bundles: TrainedBundles) -> None:
    """A 100,000-character column name, value or query parameter gets its 4xx with the
    offending text quoted short, not the request echoed back (and logged) in full."""
    row = bundles.cancer_rows[0]
    first = next(iter(row))
    long = "z" * 100_000
    header = ",".join(row)
    sends: dict[str, tuple[str, dict[str, Any]]] = {
        "column name": (CANCER, {"json": {"rows": [{**row, long: 1.0}]}}),
        "column value": (CANCER, {"json": {"rows": [{**row, first: long}]}}),
        "nested value": (CANCER, {"json": {"rows": [{**row, first: [long]}]}}),
        "body key": (CANCER, {"json": {"rows": [row], long: 1}}),
        "csv header": (CANCER, {"content": f"{long},{header}\n1,{','.join(['1'] * len(row))}",
                                "headers": {"Content-Type": "text/csv"}}),
        "csv value": (CANCER, {"content": f"{header}\n{long},{','.join(['1'] * (len(row) - 1))}",
                               "headers": {"Content-Type": "text/csv"}}),
        "query name": (f"{CANCER}?{'q' * 5000}=1", {"json": {"rows": [row]}}),
        "query value": (f"{CANCER}?mc_samples={'9' * 4000}", {"json": {"rows": [row]}}),
        "query bool": (f"{CANCER}?explain={'y' * 5000}", {"json": {"rows": [row]}}),
        "model name": (f"/v1/models/{'m' * 5000}/score", {"json": {"rows": [row]}}),
    }
    x = {"name": "x", "shape": [1, len(row)], "datatype": "FP32", "data": [[1.0] * len(row)]}
    for name, body in {"oip input name": {"inputs": [{**x, "name": long}]},
                       "oip datatype": {"inputs": [{**x, "datatype": long}]},
                       "oip data": {"inputs": [{**x, "data": [long] + [1.0] * (len(row) - 1)}]},
                       "oip output": {"inputs": [x], "outputs": [{"name": long}]}}.items():
        sends[name] = (INFER, {"json": body})
    with server.client() as c:
        for name, (path, kwargs) in sends.items():
            headers = {**AUTH, **kwargs.pop("headers", {})}
            r = c.post(path, headers=headers, **kwargs)
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
            message = r.json()["error"]
            assert len(message) < 1500, (name, len(message), message[:300])
            assert "characters)" in message, (name, message)
