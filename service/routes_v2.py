"""Open Inference Protocol v2 (KServe / Triton HTTP), so their clients work unchanged.

``infer`` takes the *preprocessed* tensor ``x`` (B, D) FP32 (any float or int type, and any
shape (B, ...) whose trailing size is D), plus an optional per-row ``seed`` tensor (B,) and
request parameters ``seed`` / ``mc_samples``; it returns ``score`` (B,) FP64,
``feature_scores`` (B, D) FP32, ``is_anomaly`` (B,) BOOL and ``p_value`` (B,) FP64. Tensors
travel as JSON ``data`` or with Triton's binary tensor extension
(``Inference-Header-Content-Length``), which ``tritonclient`` uses by default.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from anomaly import __version__
from anomaly.errors import InputError, PayloadTooLargeError
from service.repository import ModelVersion
from service.state import get_state, json_response, loads, scoring_request

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])

#: OIP datatype -> numpy dtype (little-endian, as the binary extension specifies)
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
NUMERIC = {k for k in DTYPES if k != "BOOL"}
HEADER_LENGTH = "inference-header-content-length"


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return json_response({"name": "vae-anomaly", "version": __version__,
                          "extensions": ["binary_tensor_data"]})


@router.get("/health/live", summary="Liveness")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", summary="Readiness: every model has a serving version")
async def ready(request: Request) -> Response:
    ok = get_state(request).repository.ready
    return json_response({"ready": ok}, status=200 if ok else 503)


def _outputs_metadata(mv: ModelVersion) -> list[dict[str, Any]]:
    D = mv.scorer.input_dim
    return [{"name": "score", "datatype": "FP64", "shape": [-1]},
            {"name": "feature_scores", "datatype": "FP32", "shape": [-1, D]},
            {"name": "is_anomaly", "datatype": "BOOL", "shape": [-1]},
            {"name": "p_value", "datatype": "FP64", "shape": [-1]}]


async def _metadata(request: Request, name: str, version: int | None) -> Response:
    repo = get_state(request).repository
    mv = repo.get(name, version)
    return json_response({
        "name": name,
        "versions": [str(v) for v in sorted(repo.models[name].versions)],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, mv.scorer.input_dim]}],
        "outputs": _outputs_metadata(mv),
        "parameters": {"kind": mv.scorer.manifest.kind, "threshold": mv.scorer.threshold,
                       "target_fpr": mv.scorer.manifest.threshold.target_fpr,
                       "mc_samples": mv.scorer.mc_samples, "provider": mv.scorer.provider},
    })


@router.get("/models/{name}", summary="Model metadata")
async def model_metadata(request: Request, name: str) -> Response:
    return await _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model version metadata")
async def model_version_metadata(request: Request, name: str, version: int) -> Response:
    return await _metadata(request, name, version)


async def _ready(request: Request, name: str, version: int | None) -> Response:
    get_state(request).repository.get(name, version)  # 404 when not loaded
    return json_response({"name": name, "ready": True})


@router.get("/models/{name}/ready", summary="Model readiness")
async def model_ready(request: Request, name: str) -> Response:
    return await _ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def model_version_ready(request: Request, name: str, version: int) -> Response:
    return await _ready(request, name, version)


@router.post("/models/{name}/infer", summary="Inference on the preprocessed tensor")
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference on one version")
async def infer_version(request: Request, name: str, version: int) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: int | None) -> Response:
    settings = get_state(request).settings

    async def work(mv: ModelVersion) -> Response:
        header, binary = _split_body(await request.body(), request.headers.get(HEADER_LENGTH))
        params = header.get("parameters") or {}
        if not isinstance(params, dict):
            raise InputError("'parameters' must be an object")
        tensors = _read_inputs(header, binary)
        x = _model_input(tensors, mv.scorer.input_dim)  # (B, D) float32
        batch = x.shape[0]
        if batch > settings.max_items_per_request:
            raise PayloadTooLargeError(f"{batch} samples in one request; the limit is "
                                       f"{settings.max_items_per_request}")
        seeds = _seeds(tensors.get("seed"), params.get("seed"), settings.default_seed, batch)
        n_mc = _int_param(params, "mc_samples", mv.scorer.mc_samples, settings.max_mc_samples)
        result = await mv.batcher.submit(x, seeds, n_mc)
        mv.metrics.scored(result.scores, result.p_values, result.is_anomaly)
        arrays: dict[str, np.ndarray] = {"score": result.scores.astype(np.float64),
                  "feature_scores": result.feature_scores.astype(np.float32),
                  "is_anomaly": result.is_anomaly.astype(np.bool_),
                  "p_value": result.p_values.astype(np.float64)}
        return _response(header, params, mv, arrays, n_mc)

    return await scoring_request(request, name, version, work)


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """JSON inference header and the binary tail (empty without the extension)."""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise InputError(f"Inference-Header-Content-Length {header_length!r} does not fit "
                             f"a body of {len(body)} bytes")
        cut = int(header_length)
        raw, binary = body[:cut], body[cut:]
    else:
        raw, binary = body, b""
    header = loads(raw, "the inference request")
    if not isinstance(header, dict):
        raise InputError("the inference request must be a JSON object with 'inputs'")
    return header, binary


def _read_inputs(header: dict[str, Any], binary: bytes) -> dict[str, np.ndarray]:
    """``inputs`` -> {name: array shaped as declared}."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("'inputs' must be a non-empty list of tensors")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise InputError(f"input {i} must be an object with name, shape, datatype, data")
        name = spec.get("name")
        datatype = spec.get("datatype")
        shape = spec.get("shape")
        if not isinstance(name, str) or not name:
            raise InputError(f"input {i} has no name")
        if datatype not in NUMERIC:
            raise InputError(f"input '{name}': datatype {datatype!r} is not supported; use "
                             "FP32 (or another numeric type)")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)):
            raise InputError(f"input '{name}': shape must be a list of non-negative integers")
        size = int(np.prod(shape))
        params = spec.get("parameters") or {}
        nbytes = params.get("binary_data_size") if isinstance(params, dict) else None
        if nbytes is not None:
            dtype = DTYPES[datatype]
            if not isinstance(nbytes, int) or nbytes != size * dtype.itemsize \
                    or offset + nbytes > len(binary):
                raise InputError(f"input '{name}': binary_data_size {nbytes} does not match "
                                 f"shape {shape} of {datatype} or the bytes sent")
            arr = np.frombuffer(binary, dtype=dtype, count=size, offset=offset)
            offset += nbytes
        else:
            try:
                arr = np.asarray(spec.get("data"), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"input '{name}': data must be numbers ({exc})") from exc
            if arr.size != size:
                raise InputError(f"input '{name}': {arr.size} values for shape {shape}")
        out[name] = arr.reshape(shape)
    if offset != len(binary):
        raise InputError(f"{len(binary) - offset} bytes of binary data are not claimed by "
                         "any input's binary_data_size")
    return out


def _model_input(tensors: dict[str, np.ndarray], input_dim: int) -> np.ndarray:
    if "x" in tensors:
        x = tensors["x"]
    else:
        others = [k for k in tensors if k != "seed"]
        if len(others) != 1:
            raise InputError(f"expected one input tensor named 'x' (B, {input_dim}); got "
                             f"{sorted(tensors)}")
        x = tensors[others[0]]
    if x.ndim < 2 or x.shape[0] == 0 or int(np.prod(x.shape[1:])) != input_dim:
        raise InputError(f"input 'x' must have shape (batch >= 1, {input_dim}), got "
                         f"{list(x.shape)}")
    x = np.ascontiguousarray(x.reshape(x.shape[0], input_dim), dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError("input 'x' contains NaN or infinite values")
    return x


def _seeds(tensor: np.ndarray | None, param: Any, default: int, batch: int) -> list[int]:
    if tensor is not None:
        flat = tensor.reshape(-1)
        if flat.size != batch or not np.all(np.isfinite(flat)) or np.any(flat < 0) \
                or not np.all(flat == np.floor(flat)):
            raise InputError(f"input 'seed' must hold {batch} non-negative integers")
        return [int(s) for s in flat.tolist()]
    if param is None:
        return [default] * batch
    if not isinstance(param, int) or isinstance(param, bool) or not 0 <= param < 2**63:
        raise InputError("parameter 'seed' must be a non-negative integer")
    return [param] * batch


def _int_param(params: dict[str, Any], key: str, default: int, maximum: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise InputError(f"parameter '{key}' must be an integer in [1, {maximum}]")
    return value


def _response(header: dict[str, Any], params: dict[str, Any], mv: ModelVersion,
              arrays: dict[str, np.ndarray], mc_samples: int) -> Response:
    requested = header.get("outputs")
    binary_default = bool(params.get("binary_data_output", False))
    if requested is None:
        wanted = [(name, binary_default) for name in arrays]
    else:
        if not isinstance(requested, list):
            raise InputError("'outputs' must be a list of {\"name\": ...} objects")
        wanted = []
        for spec in requested:
            name = spec.get("name") if isinstance(spec, dict) else None
            if name not in arrays:
                raise InputError(f"unknown output {name!r}; this model has {list(arrays)}")
            oparams = spec.get("parameters") or {}
            wanted.append((name, bool(oparams.get("binary_data", binary_default))
                           if isinstance(oparams, dict) else binary_default))
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, as_binary in wanted:
        arr = arrays[name]
        datatype = {"f": "FP64" if arr.dtype == np.float64 else "FP32", "b": "BOOL"}[
            arr.dtype.kind]
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if as_binary:
            raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            flat = arr.reshape(-1)
            out["data"] = flat.tolist() if arr.dtype.kind == "b" else \
                [v if math.isfinite(v) else None for v in flat.tolist()]
        outputs.append(out)
    body: dict[str, Any] = {"model_name": mv.name, "model_version": str(mv.version),
                            "parameters": {"mc_samples": mc_samples,
                                           "threshold": mv.scorer.threshold},
                            "outputs": outputs}
    if isinstance(header.get("id"), str):
        body["id"] = header["id"]
    if not chunks:
        return json_response(body)
    head = orjson.dumps(body)
    return Response(head + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})
