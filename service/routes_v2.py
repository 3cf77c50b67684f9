"""Open Inference Protocol v2 (KServe / Triton HTTP), so their clients work unchanged.

``infer`` takes the *preprocessed* tensor ``x`` (B, D) FP32, exactly as the model metadata
says, plus an optional per-row ``seed`` tensor (B,) INT64 and request parameters ``seed`` /
``mc_samples``; it returns ``score`` (B,) FP64, ``feature_scores`` (B, D) FP32,
``is_anomaly`` (B,) BOOL and ``p_value`` (B,) FP64. Tensors travel as JSON ``data`` or with
Triton's binary tensor extension (``Inference-Header-Content-Length``), which
``tritonclient`` uses by default (:mod:`service.v2_codec`). A request that does not fit the
metadata is a 400, as Triton answers it. Triton's model configuration, statistics and model
repository extensions are in :mod:`service.routes_v2_extensions`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from anomaly import __version__
from anomaly.errors import InputError, PayloadTooLargeError
from service import v2_codec
from service.batching import Admission
from service.errors import ProtocolError
from service.openapi import EXAMPLE_INFER, NEEDS_API_KEY, responses, versioned
from service.repository import ModelVersion
from service.schemas import (
    InferResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    ServerMetadata,
)
from service.state import check_api_key, get_state, json_response, scoring_request

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])

#: advertised in the server metadata, as Triton names them
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics", "model_repository"]

INFER_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"},
                             "example": EXAMPLE_INFER},
        "application/octet-stream": {"schema": {
            "type": "string", "format": "binary",
            "description": "Triton's binary tensor extension: the JSON inference request "
                           "(its length in Inference-Header-Content-Length), then the "
                           "tensors' little-endian bytes"}}}},
    "parameters": [{"name": "Inference-Header-Content-Length", "in": "header",
                    "required": False, "schema": {"type": "integer", "minimum": 0},
                    "description": "binary tensor extension: bytes of JSON before the "
                                   "binary tail"}],
    **NEEDS_API_KEY,
}
INFER_RESPONSES = responses(InferResponse, 400, 404, 408, 413, 500, 503, ok_content={
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})
INFER_RESPONSES[200]["headers"] = {"Inference-Header-Content-Length": {
    "description": "binary outputs: bytes of JSON before the binary tail",
    "schema": {"type": "integer"}}}
@router.get("", summary="Server metadata", responses=responses(ServerMetadata))
async def server_metadata() -> Response:
    return json_response({"name": "vae-anomaly", "version": __version__,
                          "extensions": EXTENSIONS})


@router.get("/health/live", summary="Liveness", responses=responses(Live))
async def live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", summary="Readiness: every model has a serving version",
            responses={200: {"model": Ready, "description": "ready"},
                       503: {"model": Ready, "description": "not ready"}})
async def ready(request: Request) -> Response:
    ok = get_state(request).repository.ready
    return json_response({"ready": ok}, status=200 if ok else 503)


def inputs_metadata(mv: ModelVersion) -> list[dict[str, Any]]:
    return [{"name": "x", "datatype": "FP32", "shape": [-1, mv.scorer.input_dim]},
            {"name": "seed", "datatype": "INT64", "shape": [-1]}]


def outputs_metadata(mv: ModelVersion) -> list[dict[str, Any]]:
    D = mv.scorer.input_dim
    return [{"name": "score", "datatype": "FP64", "shape": [-1]},
            {"name": "feature_scores", "datatype": "FP32", "shape": [-1, D]},
            {"name": "is_anomaly", "datatype": "BOOL", "shape": [-1]},
            {"name": "p_value", "datatype": "FP64", "shape": [-1]}]


async def _metadata(request: Request, name: str, version: int | None) -> Response:
    state = get_state(request)
    check_api_key(state, request)  # the threshold is a model internal
    repo = state.repository
    mv = repo.get(name, version)
    return json_response({
        "name": name,
        "versions": [str(v) for v in sorted(repo.models[name].versions)],
        "platform": "onnxruntime_onnx",
        "inputs": inputs_metadata(mv),
        "outputs": outputs_metadata(mv),
        "parameters": {"kind": mv.scorer.manifest.kind, "threshold": mv.scorer.threshold,
                       "target_fpr": mv.scorer.manifest.threshold.target_fpr,
                       "mc_samples": mv.scorer.mc_samples, "provider": mv.scorer.provider},
    })


@router.get("/models/{name}", summary="Model metadata",
            responses=responses(ModelMetadata, 404), openapi_extra=NEEDS_API_KEY)
async def model_metadata(request: Request, name: str) -> Response:
    return await _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model version metadata",
            responses=versioned(responses(ModelMetadata, 404)), openapi_extra=NEEDS_API_KEY)
async def model_version_metadata(request: Request, name: str, version: int) -> Response:
    return await _metadata(request, name, version)


async def _ready(request: Request, name: str, version: int | None) -> Response:
    get_state(request).repository.get(name, version)  # 404 when not loaded
    return json_response({"name": name, "ready": True})


@router.get("/models/{name}/ready", summary="Model readiness",
            responses=responses(ModelReady, 404))
async def model_ready(request: Request, name: str) -> Response:
    return await _ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness",
            responses=versioned(responses(ModelReady, 404)))
async def model_version_ready(request: Request, name: str, version: int) -> Response:
    return await _ready(request, name, version)


@router.post("/models/{name}/infer", summary="Inference on the preprocessed tensor",
             responses=INFER_RESPONSES, openapi_extra=INFER_DOC)
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference on one version",
             responses=versioned(INFER_RESPONSES), openapi_extra=INFER_DOC)
async def infer_version(request: Request, name: str, version: int) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: int | None) -> Response:
    settings = get_state(request).settings

    async def work(mv: ModelVersion, admission: Admission) -> Response:
        body = await request.body()
        try:
            header, binary = v2_codec.split_body(body, request.headers.get(
                v2_codec.HEADER_LENGTH))
            params = header.get("parameters") or {}
            if not isinstance(params, dict):
                raise ProtocolError("'parameters' must be an object")
            tensors = v2_codec.read_inputs(header, binary, mv.name)
            x = v2_codec.model_input(tensors, mv.scorer.input_dim)  # (B, D) float32
            batch = x.shape[0]
            if batch > settings.max_items_per_request:
                raise PayloadTooLargeError(f"{batch} samples in one request; the limit is "
                                           f"{settings.max_items_per_request}")
            seeds = v2_codec.seeds(tensors.get("seed"), params.get("seed"),
                                   settings.default_seed, batch)
            n_mc = v2_codec.int_param(params, "mc_samples", mv.scorer.mc_samples,
                                      settings.max_mc_samples)
        except PayloadTooLargeError:
            raise
        except InputError as exc:  # anything else the request got wrong: 400, as Triton
            raise ProtocolError(str(exc)) from exc
        result = await admission.submit(x, seeds, n_mc)
        if v2_codec.asks_for(header, "feature_scores"):  # the full graph, off the event loop
            await asyncio.to_thread(result.explanation.arrays)
        # made when asked for: feature_scores runs the full graph, which a request for
        # the score alone must not pay
        arrays: dict[str, Callable[[], np.ndarray]] = {
            "score": lambda: result.scores.astype(np.float64),
            "feature_scores": lambda: result.feature_scores.astype(np.float32),
            "is_anomaly": lambda: result.is_anomaly.astype(np.bool_),
            "p_value": lambda: result.p_values.astype(np.float64)}
        return v2_codec.response(
            header, params, {"model_name": mv.name, "model_version": str(mv.version),
                             "parameters": {"mc_samples": n_mc,
                                            "threshold": mv.scorer.threshold}}, arrays)

    return await scoring_request(request, name, version, work)
