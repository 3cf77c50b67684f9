"""Open Inference Protocol v2 tensors on the wire: the inference request's JSON header and
Triton's binary tail in, the model's ``x`` (B, D) FP32 and per-row seeds out; the response
tensors back as JSON ``data`` or binary.

Strict as Triton is: the inputs are ``x`` (B, D) FP32, as the model metadata says, and an
optional ``seed`` (B,) or (B, 1) INT64; any other name, datatype or shape is a 400
(:class:`~service.errors.ProtocolError`) saying what the metadata expects. There is no
conversion: FP64 is not silently rounded to FP32 (convert on the client, e.g.
``x.astype(np.float32)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from anomaly.errors import InputError, quoted
from service.errors import ProtocolError
from service.state import loads

#: OIP datatype -> numpy dtype (little-endian, as the binary extension specifies)
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
#: the datatype of each input the models take
INPUT_DATATYPES = {"x": "FP32", "seed": "INT64"}
HEADER_LENGTH = "inference-header-content-length"


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """JSON inference header and the binary tail (empty without the extension)."""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {header_length!r} does not "
                                f"fit a body of {len(body)} bytes")
        cut = int(header_length)
        raw, binary = body[:cut], body[cut:]
    else:
        raw, binary = body, b""
    try:
        header = loads(raw, "the inference request")
    except InputError as exc:
        raise ProtocolError(str(exc)) from exc
    if not isinstance(header, dict):
        raise ProtocolError("the inference request must be a JSON object with 'inputs'")
    return header, binary


def read_inputs(header: dict[str, Any], binary: bytes, model: str) -> dict[str, np.ndarray]:
    """``inputs`` -> {name: array shaped as declared}, for the names the models take."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("'inputs' must be a non-empty list of tensors")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise ProtocolError(f"input {i} must be an object with name, shape, datatype, "
                                "data")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"input {i} has no name")
        expected = INPUT_DATATYPES.get(name)
        if expected is None:
            raise ProtocolError(f"unexpected inference input {quoted(name)} for model '{model}': "
                                "it takes 'x' and, optionally, 'seed'")
        if name in out:
            raise ProtocolError(f"input '{name}' is given twice")
        if datatype != expected:
            raise ProtocolError(f"unexpected datatype {quoted(datatype)} for inference input "
                                f"'{name}', expecting {expected} (no conversion is done: "
                                "convert on the client)")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)):
            raise ProtocolError(f"input '{name}': shape must be a list of non-negative "
                                "integers")
        size = math.prod(shape)
        params = spec.get("parameters") or {}
        nbytes = params.get("binary_data_size") if isinstance(params, dict) else None
        dtype = DTYPES[datatype]
        if nbytes is not None:
            if not isinstance(nbytes, int) or nbytes != size * dtype.itemsize \
                    or offset + nbytes > len(binary):
                raise ProtocolError(f"input '{name}': binary_data_size {nbytes} does not "
                                    f"match shape {quoted(shape)} of {datatype} or the bytes sent")
            arr = np.frombuffer(binary, dtype=dtype, count=size, offset=offset)
            offset += nbytes
        else:
            try:
                arr = np.asarray(spec.get("data"), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ProtocolError(f"input '{name}': data must be numbers "
                                    f"({quoted(str(exc))})") from exc
            if arr.size != size:
                raise ProtocolError(f"input '{name}': {arr.size} values for shape "
                                    f"{quoted(shape)}")
        out[name] = arr.reshape(shape)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data are not claimed by "
                            "any input's binary_data_size")
    return out


def model_input(tensors: dict[str, np.ndarray], input_dim: int) -> np.ndarray:
    """The ``x`` tensor as (B, D) float32; 400 unless it is shaped [B >= 1, D] exactly."""
    x = tensors.get("x")
    if x is None:
        raise ProtocolError(f"input 'x' (shape [-1, {input_dim}], FP32) is missing")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != input_dim:
        raise ProtocolError(f"unexpected shape {list(x.shape)} for inference input 'x', "
                            f"expecting [-1, {input_dim}] (batch >= 1)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ProtocolError("input 'x' contains NaN or infinite values")
    return x


def seeds(tensor: np.ndarray | None, param: Any, default: int, batch: int) -> list[int]:
    """One noise seed per row: the ``seed`` tensor (B,) or (B, 1), else the ``seed`` request
    parameter for every row, else ``default``."""
    if tensor is not None:
        if tensor.shape not in ((batch,), (batch, 1)):
            raise ProtocolError(f"unexpected shape {list(tensor.shape)} for inference input "
                                f"'seed', expecting [{batch}] or [{batch}, 1]")
        flat = tensor.reshape(-1)
        if not np.all(np.isfinite(flat)) or np.any(flat < 0) \
                or not np.all(flat == np.floor(flat)):
            raise ProtocolError(f"input 'seed' must hold {batch} non-negative integers")
        return [int(s) for s in flat.tolist()]
    if param is None:
        return [default] * batch
    if not isinstance(param, int) or isinstance(param, bool) or not 0 <= param < 2**63:
        raise ProtocolError("parameter 'seed' must be a non-negative integer")
    return [param] * batch


def int_param(params: dict[str, Any], key: str, default: int, maximum: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise ProtocolError(f"parameter '{key}' must be an integer in [1, {maximum}]")
    return value


def asks_for(header: dict[str, Any], name: str) -> bool:
    """Whether the request's ``outputs`` name ``name`` (all outputs when it has none)."""
    requested = header.get("outputs")
    if not isinstance(requested, list):
        return requested is None
    return any(isinstance(spec, dict) and spec.get("name") == name for spec in requested)


def response(header: dict[str, Any], params: dict[str, Any], body: dict[str, Any],
             arrays: dict[str, Callable[[], np.ndarray]]) -> Response:
    """The inference response: ``body`` (model_name, model_version, parameters) plus the
    outputs the request asked for (all by default), as JSON data or binary. ``arrays``
    makes each output when called, so that outputs not asked for are never computed."""
    requested = header.get("outputs")
    binary_default = bool(params.get("binary_data_output", False))
    if requested is None:
        wanted = [(name, binary_default) for name in arrays]
    else:
        if not isinstance(requested, list):
            raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects")
        wanted = []
        for spec in requested:
            name = spec.get("name") if isinstance(spec, dict) else None
            if name not in arrays:
                raise ProtocolError(f"unknown output {quoted(name)}; this model has {list(arrays)}")
            oparams = spec.get("parameters") or {}
            wanted.append((name, bool(oparams.get("binary_data", binary_default))
                           if isinstance(oparams, dict) else binary_default))
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, as_binary in wanted:
        arr = arrays[name]()
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
    body = {**body, "outputs": outputs}
    if isinstance(header.get("id"), str):
        body["id"] = header["id"]
    if not chunks:
        return Response(orjson.dumps(body), media_type="application/json")
    head = orjson.dumps(body)
    return Response(head + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})
