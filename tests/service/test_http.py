"""End to end over HTTP against a real uvicorn process: rows (JSON, CSV) and images (raw PNG,
multipart) score exactly as offline, explanations, model listing, OIP v2 (JSON, binary
tensors, the unmodified tritonclient), metrics names and promtool, access log, docs."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anomaly.inference import Scorer
from tests.service.conftest import AUTH, Server, TrainedBundles, metric_value, png_bytes

DOCS_METRICS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# Different batch compositions take different onnxruntime GEMM paths; scores agree to float32
# rounding, not bit for bit (measured max difference ~4e-6 on scores of order 10-1000).
RTOL, ATOL = 1e-5, 1e-4


def _csv(rows: list[dict[str, float]]) -> str:
    names = list(rows[0])
    return "\n".join([",".join(names)] + [",".join(repr(r[n]) for n in names) for r in rows])


def test_json_rows_match_offline_scoring(server: Server, bundles: TrainedBundles) -> None:
    rows = bundles.cancer_rows[:40]
    with server.client(headers=AUTH) as c:
        r = c.post("/v1/models/cancer/score", json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "cancer" and body["version"] == 1
    results = body["results"]
    offline = Scorer(bundles.cancer).score_rows(rows)
    np.testing.assert_allclose([x["score"] for x in results], offline.scores, RTOL, ATOL)
    np.testing.assert_allclose([x["p_value"] for x in results], offline.p_values)
    first = results[0]
    assert set(first) == {"score", "threshold", "is_anomaly", "p_value", "model", "version",
                          "mc_samples"}
    assert first["threshold"] == pytest.approx(offline.threshold)
    assert first["mc_samples"] == offline.mc_samples
    assert [x["is_anomaly"] for x in results] == [x["score"] > x["threshold"] for x in results]


def test_csv_body_with_seed_matches_offline(server: Server, bundles: TrainedBundles) -> None:
    rows = bundles.cancer_rows[100:130]
    with server.client(headers=AUTH) as c:
        r = c.post("/v1/models/cancer/score?seed=7&mc_samples=8", content=_csv(rows),
                   headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    offline = Scorer(bundles.cancer).score_rows(rows, seeds=7, mc_samples=8)
    np.testing.assert_allclose([x["score"] for x in r.json()["results"]], offline.scores,
                               RTOL, ATOL)
    assert {x["mc_samples"] for x in r.json()["results"]} == {8}


def test_a_locale_csv_body_scores_as_the_plain_one(server: Server,
                                                   bundles: TrainedBundles) -> None:
    """A body as a ``;``-and-decimal-comma spreadsheet writes it gives the plain CSV's scores."""
    rows = bundles.cancer_rows[130:140]
    names = list(rows[0])
    body = "\r\n".join([";".join(names)] + [";".join(repr(r[n]).replace(".", ",")
                                                      for n in names) for r in rows])
    with server.client(headers=AUTH) as c:
        plain = c.post("/v1/models/cancer/score", content=_csv(rows),
                       headers={"Content-Type": "text/csv"})
        locale = c.post("/v1/models/cancer/score", content=body,
                        headers={"Content-Type": "text/csv"})
    assert plain.status_code == locale.status_code == 200, locale.text
    assert [x["score"] for x in locale.json()["results"]] == \
        [x["score"] for x in plain.json()["results"]]


def test_a_cp1252_csv_body_scores_as_the_utf8_one(server: Server,
                                                  bundles: TrainedBundles) -> None:
    """A body as Excel saves "CSV" in Western Europe (cp1252: ``größe`` in the header, an
    extra column dropped with ``ignore_unknown_columns``), a UTF-16 one and one with CR line
    ends score as the UTF-8 body, and the column is named rightly when it is refused."""
    rows = bundles.cancer_rows[140:145]
    names = list(rows[0])
    text = "\n".join([",".join([*names, "größe"])] + [
        ",".join([*(repr(r[n]) for n in names), "groß"]) for r in rows]) + "\n"
    with server.client(headers=AUTH) as c:
        got = [c.post("/v1/models/cancer/score?ignore_unknown_columns=true",
                      content=body, headers={"Content-Type": "text/csv"})
               for body in (text.encode("utf-8"), text.encode("cp1252"),
                            text.encode("utf-16"),  # Excel's "Unicode Text"
                            text.replace("\n", "\r").encode())]  # classic Mac line ends
        strict = c.post("/v1/models/cancer/score", content=text.encode("cp1252"),
                        headers={"Content-Type": "text/csv"})
    assert [r.status_code for r in got] == [200] * 4, [r.text for r in got]
    for other in got[1:]:
        assert [x["score"] for x in other.json()["results"]] == \
            [x["score"] for x in got[0].json()["results"]]
    assert strict.status_code == 422 and "unknown column(s) ['größe']" in strict.json()["error"]


def test_explain_rows_gives_top_columns(server: Server, bundles: TrainedBundles) -> None:
    rows = bundles.cancer_rows[:5]
    with server.client(headers=AUTH) as c:
        r = c.post("/v1/models/cancer/score?explain=true&top_k=3", json={"rows": rows})
    assert r.status_code == 200, r.text
    scorer = Scorer(bundles.cancer)
    expected = scorer.top_columns(scorer.score_rows(rows), 3)
    for item, top in zip(r.json()["results"], expected, strict=True):
        assert [t["column"] for t in item["top_columns"]] == [name for name, _ in top]
        np.testing.assert_allclose([t["score"] for t in item["top_columns"]],
                                   [v for _, v in top], RTOL, ATOL)


def test_raw_png_and_multipart_images(server: Server, bundles: TrainedBundles) -> None:
    images = bundles.digit_images[:3]
    pngs = [png_bytes(img) for img in images]
    offline = Scorer(bundles.digits).score_images(pngs)
    with server.client(headers=AUTH) as c:
        raw = c.post("/v1/models/digits/score", content=pngs[0],
                     headers={"Content-Type": "image/png"})
        multi = c.post("/v1/models/digits/score",
                       files=[("files", (f"d{i}.png", p, "image/png"))
                              for i, p in enumerate(pngs)])
        jpeg = io.BytesIO()
        Image.fromarray(images[0]).save(jpeg, format="JPEG", quality=95)
        as_jpeg = c.post("/v1/models/digits/score", content=jpeg.getvalue(),
                         headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    assert multi.status_code == 200, multi.text
    assert as_jpeg.status_code == 200, as_jpeg.text
    assert raw.json()["results"][0]["score"] == pytest.approx(offline.scores[0], RTOL, ATOL)
    results = multi.json()["results"]
    assert [x["filename"] for x in results] == ["d0.png", "d1.png", "d2.png"]
    np.testing.assert_allclose([x["score"] for x in results], offline.scores, RTOL, ATOL)


def test_explain_image_heatmap(server: Server, bundles: TrainedBundles) -> None:
    png = png_bytes(bundles.digit_images[5])
    with server.client(headers=AUTH) as c:
        plain = c.post("/v1/models/digits/score?explain=true", content=png,
                       headers={"Content-Type": "image/png"})
        raw = c.post("/v1/models/digits/score?explain=true&raw_map=true", content=png,
                     headers={"Content-Type": "image/png"})
    assert plain.status_code == 200 and raw.status_code == 200, raw.text
    item = plain.json()["results"][0]
    assert "heatmap" not in item
    heat_png = Image.open(io.BytesIO(base64.b64decode(item["heatmap_png"])))
    assert heat_png.format == "PNG" and heat_png.size == (8, 8)
    scorer = Scorer(bundles.digits)
    expected = scorer.heatmaps(scorer.score_images([png]))[0]  # (8, 8)
    np.testing.assert_allclose(raw.json()["results"][0]["heatmap"], expected, RTOL, ATOL)


def test_models_listing(server: Server, bundles: TrainedBundles) -> None:
    with server.client(headers=AUTH) as c:
        models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
    assert set(models) == {"cancer", "digits"}
    cancer = models["cancer"]["versions"][0]
    scorer = Scorer(bundles.cancer)
    assert cancer["version"] == 1 and cancer["kind"] == "tabular"
    assert cancer["threshold"] == pytest.approx(scorer.threshold)
    assert cancer["target_fpr"] == 0.05
    assert cancer["provider"] == "CPUExecutionProvider"  # no GPU on the test machines
    assert [c["name"] for c in cancer["input"]["columns"]][:2] == ["mean_radius",
                                                                   "mean_texture"]
    digits = models["digits"]["versions"][0]
    assert digits["kind"] == "image" and digits["input"]["height"] == 8
    assert models["digits"]["default_version"] == 1  # a bare bundle is version 1


def test_oip_v2_json_round_trip(server: Server, bundles: TrainedBundles) -> None:
    scorer = Scorer(bundles.cancer)
    x = scorer.preprocessor.transform(  # type: ignore[union-attr]
        {k: [r[k] for r in bundles.cancer_rows[:4]] for k in bundles.cancer_rows[0]}).x
    with server.client() as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
        assert c.get("/v2/models/cancer/ready").status_code == 200
        meta = c.get("/v2/models/cancer", headers=AUTH).json()
        assert meta["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 30]}
        assert {o["name"] for o in meta["outputs"]} >= {"score", "feature_scores",
                                                        "is_anomaly"}
        req = {"id": "r1", "inputs": [{"name": "x", "shape": [4, 30], "datatype": "FP32",
                                       "data": x.reshape(-1).tolist()}]}
        r = c.post("/v2/models/cancer/infer", json=req, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "cancer" and body["model_version"] == "1"
    assert body["id"] == "r1"
    out = {o["name"]: o for o in body["outputs"]}
    offline = scorer.score(x)
    np.testing.assert_allclose(out["score"]["data"], offline.scores, RTOL, ATOL)
    assert out["feature_scores"]["shape"] == [4, 30]
    np.testing.assert_allclose(np.reshape(out["feature_scores"]["data"], (4, 30)),
                               offline.feature_scores, RTOL, ATOL)
    assert out["is_anomaly"]["datatype"] == "BOOL"
    assert out["is_anomaly"]["data"] == [bool(v) for v in offline.is_anomaly]


def test_oip_v2_binary_tensors_and_per_row_seeds(server: Server,
                                                 bundles: TrainedBundles) -> None:
    """Triton's binary tensor extension, built by hand from the spec."""
    scorer = Scorer(bundles.digits)
    x = (bundles.digit_images[:3].reshape(3, 64) / 255.0).astype(np.float32)
    seeds = np.array([3, 4, 5], dtype=np.int64)
    header = json.dumps({
        "inputs": [{"name": "x", "shape": [3, 64], "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes}},
                   {"name": "seed", "shape": [3], "datatype": "INT64",
                    "parameters": {"binary_data_size": seeds.nbytes}}],
        "outputs": [{"name": "score", "parameters": {"binary_data": True}},
                    {"name": "is_anomaly", "parameters": {"binary_data": True}}],
    }).encode()
    with server.client(headers=AUTH) as c:
        r = c.post("/v2/models/digits/versions/1/infer",
                   content=header + x.tobytes() + seeds.tobytes(),
                   headers={"Inference-Header-Content-Length": str(len(header)),
                            "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    cut = int(r.headers["Inference-Header-Content-Length"])
    head = json.loads(r.content[:cut])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sizes == [3 * 8, 3]
    scores = np.frombuffer(r.content[cut:cut + 24], dtype="<f8")
    flags = np.frombuffer(r.content[cut + 24:], dtype=np.bool_)
    offline = scorer.score(x, seeds=[3, 4, 5])
    np.testing.assert_allclose(scores, offline.scores, RTOL, ATOL)
    assert flags.tolist() == offline.is_anomaly.tolist()


def test_tritonclient_works_unchanged(server: Server, bundles: TrainedBundles) -> None:
    httpclient = pytest.importorskip(
        "tritonclient.http", reason="tritonclient[http] is a dev dependency; "
        "pip install -e '.[dev]'")
    scorer = Scorer(bundles.cancer)
    x = scorer.preprocessor.transform(  # type: ignore[union-attr]
        {k: [r[k] for r in bundles.cancer_rows[:5]] for k in bundles.cancer_rows[0]}).x
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("cancer")
        assert client.get_model_metadata("cancer", headers=dict(AUTH))["inputs"][0][
            "shape"] == [-1, 30]
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)  # binary by default
        result = client.infer("cancer", [inp], headers=dict(AUTH))  # it adds to the dict
        json_inp = httpclient.InferInput("x", list(x.shape), "FP32")
        json_inp.set_data_from_numpy(x, binary_data=False)
        json_result = client.infer(
            "cancer", [json_inp], headers=dict(AUTH),
            outputs=[httpclient.InferRequestedOutput("score", binary_data=False)])
    finally:
        client.close()
    offline = scorer.score(x)
    np.testing.assert_allclose(result.as_numpy("score"), offline.scores, RTOL, ATOL)
    np.testing.assert_allclose(result.as_numpy("feature_scores"), offline.feature_scores,
                               RTOL, ATOL)
    assert result.as_numpy("is_anomaly").tolist() == offline.is_anomaly.tolist()
    np.testing.assert_allclose(json_result.as_numpy("score"), offline.scores, RTOL, ATOL)


def _doc_metric_names() -> set[str]:
    return set(re.findall(r"^\| `(anomaly_[a-z_]+)` \|", DOCS_METRICS.read_text(), re.M))


def test_metrics_are_exactly_the_documented_ones(server: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with server.client(headers=AUTH) as c:  # make sure every histogram has a sample
        c.post("/v1/models/digits/score",
               content=png_bytes(np.zeros((8, 8), np.uint8)),
               headers={"Content-Type": "image/png"})
        text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # the parser strips _total from counter family names
    exposed = {name + "_total" if f.type == "counter" else name
               for name, f in families.items()}
    documented = _doc_metric_names()
    assert len(documented) == 15
    assert exposed == documented
    for f in families.values():
        for sample in f.samples:
            assert set(sample.labels) <= {"model", "version", "outcome", "provider", "le"}
    assert metric_value(text, "anomaly_model_info", model="cancer",
                        provider="CPUExecutionProvider") == 1
    assert metric_value(text, "anomaly_model_ready", model="digits") == 1
    # anomaly_score buckets are per-model calibration quantiles: different le per model
    les = {m: {s.labels["le"] for s in families["anomaly_score"].samples
               if s.name.endswith("_bucket") and s.labels["model"] == m}
           for m in ("cancer", "digits")}
    assert les["cancer"] and les["cancer"] != les["digits"]


def test_promtool_check_metrics(server: Server, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: apt-get install prometheus (CI's .ci/run does)")
    with server.client() as c:
        text = c.get("/metrics").text
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert check.stdout.decode().strip() == "" and check.stderr.decode().strip() == "", \
        "promtool lint findings: " + check.stdout.decode() + check.stderr.decode()


def test_access_log_is_json_with_request_id(server: Server) -> None:
    with server.client() as c:
        r = c.get("/healthz", headers={"X-Request-ID": "trace-abc-123"})
        generated = c.get("/readyz").headers["x-request-id"]
    assert r.headers["x-request-id"] == "trace-abc-123"
    entries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5  # the line is written just after the response is sent
    while time.monotonic() < deadline and not any(
            e["request_id"] == generated for e in entries):
        time.sleep(0.05)
        entries = []
        for line in server.log_lines():
            entry = json.loads(line)  # every line the service writes is JSON
            if entry.get("logger") == "service.access":
                entries.append(entry)
    mine = [e for e in entries if e["request_id"] == "trace-abc-123"]
    assert mine and mine[0]["path"] == "/healthz" and mine[0]["status"] == 200
    assert mine[0]["duration_ms"] >= 0
    assert any(e["request_id"] == generated for e in entries)


def test_health_and_docs(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        spec = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    assert "/v1/models/{name}/score" in spec["paths"]
    assert "/v2/models/{name}/infer" in spec["paths"]
    content = spec["paths"]["/v1/models/{name}/score"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/csv", "image/png", "multipart/form-data"} <= set(content)


def test_oip_v2_makes_only_the_outputs_asked_for() -> None:
    """feature_scores runs the full graph: a request for the score alone must not make it."""
    from service import v2_codec

    made: list[str] = []

    def output(name: str, value: np.ndarray) -> Callable[[], np.ndarray]:
        def make() -> np.ndarray:
            made.append(name)
            return value
        return make

    arrays = {"score": output("score", np.array([1.5, 2.0])),
              "feature_scores": output("feature_scores", np.ones((2, 3), np.float32)),
              "is_anomaly": output("is_anomaly", np.array([False, True]))}
    r = v2_codec.response({"outputs": [{"name": "score"}]}, {}, {"model_name": "m"}, arrays)
    assert made == ["score"]
    assert json.loads(r.body)["outputs"] == [{"name": "score", "datatype": "FP64",
                                              "shape": [2], "data": [1.5, 2.0]}]
    made.clear()
    v2_codec.response({}, {}, {"model_name": "m"}, arrays)  # no "outputs": all of them
    assert made == ["score", "feature_scores", "is_anomaly"]
