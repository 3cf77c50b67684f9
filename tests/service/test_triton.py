"""Triton's extensions of the v2 protocol through the unmodified ``tritonclient``: model
configuration, statistics and the model repository (index, load; unload answers 409), all
advertised in the server metadata; requests that do not fit the metadata answer 400 as Triton
does, FP64 where FP32 is declared included."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anomaly.inference import Scorer
from tests.service.conftest import (
    API_KEY,
    AUTH,
    Server,
    TrainedBundles,
    make_repo,
    start_server,
)
from tests.service.test_http import ATOL, RTOL

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is a dev "
                                 "dependency; pip install -e '.[dev]'")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def triton_server(bundles: TrainedBundles, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("server-triton")
    repo = make_repo(bundles, root / "models")
    srv = start_server(repo, root, "--api-key", API_KEY, "--max-batch-size", "16",
                       "--max-queue-delay-us", "700", "--max-items-per-request", "512",
                       "--no-access-log")
    yield srv, repo
    srv.stop()


@pytest.fixture()
def client(triton_server: tuple[Server, Path]) -> Iterator[Any]:
    c = httpclient.InferenceServerClient(triton_server[0].url.removeprefix("http://"))
    yield c
    c.close()


def _x(bundles: TrainedBundles, n: int) -> np.ndarray:
    scorer = Scorer(bundles.cancer)
    return scorer.preprocessor.transform(  # type: ignore[union-attr]
        {k: [r[k] for r in bundles.cancer_rows[:n]] for k in bundles.cancer_rows[0]}).x


def test_server_metadata_advertises_the_extensions(client: Any) -> None:
    extensions = client.get_server_metadata()["extensions"]
    assert {"binary_tensor_data", "model_configuration", "statistics",
            "model_repository"} <= set(extensions)


def test_model_config(client: Any) -> None:
    config = client.get_model_config("cancer", headers=dict(AUTH))
    assert config["name"] == "cancer" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 512
    assert config["input"][0] == {"name": "x", "data_type": "TYPE_FP32",
                                  "format": "FORMAT_NONE", "dims": [30], "optional": False}
    assert [o["name"] for o in config["output"]] == ["score", "feature_scores",
                                                     "is_anomaly", "p_value"]
    assert config["dynamic_batching"] == {"preferred_batch_size": [16],
                                          "max_queue_delay_microseconds": 700}
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert client.get_model_config("digits", "1", headers=dict(AUTH))["input"][0]["dims"] \
        == [64]
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_config("cancer", "7", headers=dict(AUTH))
    assert missing.value.status() == "404" and "no version 7" in missing.value.message()
    with pytest.raises(InferenceServerException) as unauthorised:
        client.get_model_config("cancer")
    assert unauthorised.value.status() == "401"


def test_inference_statistics_count_what_was_scored(client: Any, bundles: TrainedBundles
                                                    ) -> None:
    def stats() -> dict[str, Any]:
        (entry,) = client.get_inference_statistics("cancer", "1",
                                                   headers=dict(AUTH))["model_stats"]
        return entry

    before = stats()
    x = _x(bundles, 5)
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("cancer", [inp], headers=dict(AUTH))
    np.testing.assert_allclose(result.as_numpy("score"), Scorer(bundles.cancer).score(x).scores,
                               RTOL, ATOL)
    after = stats()
    assert after["name"] == "cancer" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 5
    assert after["execution_count"] - before["execution_count"] == 1
    ok = after["inference_stats"]["success"]
    assert ok["count"] - before["inference_stats"]["success"]["count"] == 1
    assert ok["ns"] > before["inference_stats"]["success"]["ns"]
    assert after["inference_stats"]["compute_infer"]["ns"] > 0
    assert after["last_inference"] > 1.7e12  # ms since the epoch
    assert 5 in {b["batch_size"] for b in after["batch_stats"]}
    everything = client.get_inference_statistics(headers=dict(AUTH))["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} == {("cancer", "1"),
                                                               ("digits", "1")}


def test_repository_index_load_and_unload(client: Any, triton_server: tuple[Server, Path],
                                          bundles: TrainedBundles) -> None:
    _, repo = triton_server
    index = client.get_model_repository_index(headers=dict(AUTH))
    assert {(e["name"], e["version"], e["state"]) for e in index} == {
        ("cancer", "1", "READY"), ("digits", "1", "READY")}
    shutil.copytree(bundles.cancer, repo / "cancer" / "2")
    try:
        index = {(e["name"], e["version"]): e
                 for e in client.get_model_repository_index(headers=dict(AUTH))}
        assert index["cancer", "2"]["state"] == "UNAVAILABLE"  # on disk, not loaded yet
        assert "load" in index["cancer", "2"]["reason"]
        client.load_model("cancer", headers=dict(AUTH))
        assert client.is_model_ready("cancer", "2")
        # a version that fails to load: the load answers 400 (as Triton's), v2 keeps serving
        with (repo / "cancer" / "2" / "model.onnx").open("ab") as fh:
            fh.write(b"tampered")
        with pytest.raises(InferenceServerException) as failed:
            client.load_model("cancer", headers=dict(AUTH))
        assert failed.value.status() == "400" and "sha256" in failed.value.message()
        assert "serving [1, 2]" in failed.value.message()
        index = {(e["name"], e["version"]): e
                 for e in client.get_model_repository_index(headers=dict(AUTH))}
        assert index["cancer", "2"]["state"] == "READY"
        assert "sha256" in index["cancer", "2"]["reason"]
        with pytest.raises(InferenceServerException) as unload:
            client.unload_model("cancer", headers=dict(AUTH))
        assert unload.value.status() == "409"
        assert "follow the repository on disk" in unload.value.message()
        with pytest.raises(InferenceServerException) as config:
            client.load_model("cancer", headers=dict(AUTH), config='{"max_batch_size": 1}')
        assert config.value.status() == "400" and "not supported" in config.value.message()
    finally:
        shutil.rmtree(repo / "cancer" / "2")
        client.load_model("cancer", headers=dict(AUTH))
    ready = client.get_model_repository_index(headers=dict(AUTH))
    assert [e["version"] for e in ready if e["name"] == "cancer"] == ["1"]


def test_requests_that_do_not_fit_the_metadata_answer_400(client: Any,
                                                          bundles: TrainedBundles) -> None:
    x = _x(bundles, 2)
    cases = {
        "FP64 for FP32": ("x", x.astype(np.float64), "FP64"),
        "(B, 1, 30)": ("x", x.reshape(2, 1, 30), "FP32"),
        "(B, 29)": ("x", x[:, :29], "FP32"),
        "unknown input": ("features", x, "FP32"),
    }
    for label, (name, array, datatype) in cases.items():
        inp = httpclient.InferInput(name, list(array.shape), datatype)
        inp.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as err:
            client.infer("cancer", [inp], headers=dict(AUTH))
        assert err.value.status() == "400", (label, err.value.message())


def test_fp64_rejection_names_the_rule(triton_server: tuple[Server, Path]) -> None:
    server, _ = triton_server
    with server.client(headers=AUTH) as c:
        r = c.post("/v2/models/cancer/infer", json={"inputs": [
            {"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [0.0] * 30}]})
    assert r.status_code == 400
    assert r.json() == {"error": "unexpected datatype 'FP64' for inference input 'x', "
                                 "expecting FP32 (no conversion is done: convert on the "
                                 "client)"}
