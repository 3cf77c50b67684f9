"""Triton's extensions of the v2 protocol, as ``tritonclient`` calls them:

* model configuration: ``GET /v2/models/{name}[/versions/{v}]/config``, Triton's ModelConfig
  (model_config.proto) as JSON, built from the bundle and the service settings;
* statistics: ``GET /v2/models[/{name}[/versions/{v}]]/stats`` (:mod:`service.stats`);
* model repository: ``POST /v2/repository/index`` (every model and version on disk, READY or
  UNAVAILABLE with the reason), ``.../models/{name}/load`` (a reload from disk; 400 when a
  version failed to load, as Triton answers a failed load) and ``.../unload``, which answers
  409: here the versions served follow the repository on disk, so a model is unloaded by
  removing its directory and loading (or reloading) it.

All need the API key when one is configured. This router is included before
:mod:`service.routes_v2`'s, so that ``/v2/models/stats`` is not read as a model named stats.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from anomaly.errors import InputError
from service.errors import ConflictError, ProtocolError
from service.openapi import NEEDS_API_KEY, error, responses, versioned
from service.repository import ModelRepository, ModelVersion, discover_versions
from service.schemas import ModelConfig, ReloadReport, StatisticsResponse
from service.state import ServiceState, check_api_key, get_state, json_response, loads

router = APIRouter(prefix="/v2", tags=["v2 extensions (Triton)"])

INDEX_DOC: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/RepositoryIndexRequest"},
        "example": {"ready": True}}}},
    **NEEDS_API_KEY}
LOAD_DOC: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/RepositoryLoadRequest"}, "example": {}}}},
    **NEEDS_API_KEY}
UNLOAD_DOC: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/RepositoryUnloadRequest"}}}},
    **NEEDS_API_KEY}
INDEX_RESPONSES = responses(None, 400, 408, 413, ok_content={"application/json": {"schema": {
    "type": "array", "items": {"$ref": "#/components/schemas/RepositoryIndexEntry"}}}})


def _authorised(request: Request) -> ServiceState:
    state = get_state(request)
    check_api_key(state, request)
    return state


# --- model configuration ---------------------------------------------------------------------

def model_config(state: ServiceState, mv: ModelVersion) -> dict[str, Any]:
    """Triton's ModelConfig of one loaded version. Per-row scalars are ``dims: [1]`` with
    ``reshape: {shape: []}``, as Triton writes a (batch,) tensor."""
    s = state.settings
    D = mv.scorer.input_dim
    scalar = {"dims": [1], "reshape": {"shape": []}}
    config: dict[str, Any] = {
        "name": mv.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"all": {}},  # every version directory on disk is served
        "max_batch_size": s.max_items_per_request,
        "input": [
            {"name": "x", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [D],
             "optional": False},
            {"name": "seed", "data_type": "TYPE_INT64", "format": "FORMAT_NONE", **scalar,
             "optional": True}],
        "output": [
            {"name": "score", "data_type": "TYPE_FP64", **scalar},
            {"name": "feature_scores", "data_type": "TYPE_FP32", "dims": [D]},
            {"name": "is_anomaly", "data_type": "TYPE_BOOL", **scalar},
            {"name": "p_value", "data_type": "TYPE_FP64", **scalar}],
        "instance_group": [{
            "name": mv.name, "count": s.instances,
            "kind": "KIND_GPU" if mv.scorer.provider.startswith("CUDA") else "KIND_CPU"}],
        "parameters": {
            "kind": {"string_value": mv.scorer.manifest.kind},
            "mc_samples": {"string_value": str(mv.scorer.mc_samples)},
            "provider": {"string_value": mv.scorer.provider},
            # the queue bound is in samples here, not in requests as Triton's queue policy
            "max_queue_size_samples": {"string_value": str(s.max_queue_size)}},
    }
    if s.dynamic_batching:
        config["dynamic_batching"] = {
            "preferred_batch_size": [s.max_batch_size],
            "max_queue_delay_microseconds": s.max_queue_delay_us}
    return config


@router.get("/models/{name}/config", summary="Model configuration (Triton extension)",
            responses=responses(ModelConfig, 404), openapi_extra=NEEDS_API_KEY)
async def config(request: Request, name: str) -> Response:
    state = _authorised(request)
    return json_response(model_config(state, state.repository.get(name)))


@router.get("/models/{name}/versions/{version}/config",
            summary="Model version configuration (Triton extension)",
            responses=versioned(responses(ModelConfig, 404)), openapi_extra=NEEDS_API_KEY)
async def version_config(request: Request, name: str, version: int) -> Response:
    state = _authorised(request)
    return json_response(model_config(state, state.repository.get(name, version)))


# --- statistics ------------------------------------------------------------------------------

def _stats(versions: list[ModelVersion]) -> Response:
    return json_response({"model_stats": [mv.metrics.stats.describe(mv.name, mv.version)
                                          for mv in versions]})


@router.get("/models/stats", summary="Statistics of every loaded model version (Triton "
            "extension)", responses=responses(StatisticsResponse),
            openapi_extra=NEEDS_API_KEY)
async def all_stats(request: Request) -> Response:
    repo = _authorised(request).repository
    return _stats([mv for _, entry in sorted(repo.models.items())
                   for _, mv in sorted(entry.versions.items())])


@router.get("/models/{name}/stats", summary="Statistics of a model's versions (Triton "
            "extension)", responses=responses(StatisticsResponse, 404),
            openapi_extra=NEEDS_API_KEY)
async def model_stats(request: Request, name: str) -> Response:
    repo = _authorised(request).repository
    repo.get(name)  # 404 unless the model has a loaded version
    return _stats([mv for _, mv in sorted(repo.models[name].versions.items())])


@router.get("/models/{name}/versions/{version}/stats", summary="Statistics of one version "
            "(Triton extension)", responses=versioned(responses(StatisticsResponse, 404)),
            openapi_extra=NEEDS_API_KEY)
async def version_stats(request: Request, name: str, version: int) -> Response:
    repo = _authorised(request).repository
    return _stats([repo.get(name, version)])


# --- model repository ------------------------------------------------------------------------

def repository_index(repo: ModelRepository, ready_only: bool) -> list[dict[str, str]]:
    """One entry per model version on disk (and per model without any), READY when it
    serves, UNAVAILABLE with the reason otherwise."""
    out: list[dict[str, str]] = []
    for name in sorted(set(repo.model_names_on_disk()) | set(repo.models)):
        entry = repo.models.get(name)
        loaded = entry.versions if entry is not None else {}
        failures = entry.failures if entry is not None else {}
        on_disk = set(discover_versions(repo.root / name))
        versions = sorted(on_disk | set(loaded))
        if not versions and not ready_only:
            out.append({"name": name, "version": "", "state": "UNAVAILABLE",
                        "reason": "no version directory with a bundle"})
        for v in versions:
            failure = failures.get(v)
            if v in loaded:
                reason = "" if failure is None else (
                    f"its changed files failed to load ({failure.error}); the previous load "
                    "serves")
                out.append({"name": name, "version": str(v), "state": "READY",
                            "reason": reason})
            elif not ready_only:
                reason = failure.error if failure is not None else (
                    f"not loaded yet: POST /v2/repository/models/{name}/load")
                out.append({"name": name, "version": str(v), "state": "UNAVAILABLE",
                            "reason": reason})
    return out


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    """An optional JSON object body (tritonclient sends an empty one); 400 otherwise."""
    if not body.strip():
        return {}
    try:
        payload = loads(body, what)
    except InputError as exc:
        raise ProtocolError(str(exc)) from exc
    if not isinstance(payload, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return payload


@router.post("/repository/index", summary="Models and versions in the repository (Triton "
             "extension)", responses=INDEX_RESPONSES, openapi_extra=INDEX_DOC)
async def index(request: Request) -> Response:
    repo = _authorised(request).repository
    payload = _json_object(await request.body(), "the index request")
    ready_only = payload.get("ready", False)
    if not isinstance(ready_only, bool):
        raise ProtocolError("'ready' must be true or false")
    return json_response(repository_index(repo, ready_only))


@router.post("/repository/models/{name}/load", summary="Load or reload a model from its "
             "directory (Triton extension)", responses=responses(ReloadReport, 400, 404, 408, 413),
             openapi_extra=LOAD_DOC)
async def load(request: Request, name: str) -> Response:
    """A reload from disk. 400 when a version failed to load (the previous load, if any,
    keeps serving), as Triton answers a failed load; the report of every outcome is
    ``POST /v1/models/{name}/reload``."""
    repo = _authorised(request).repository
    payload = _json_object(await request.body(), "the load request")
    params = payload.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    if params:
        raise ProtocolError(f"load parameters {sorted(params)} are not supported: a model "
                            "loads from its directory as it is")
    report = (await repo.reload(name)).describe()
    if report["failed"]:
        failed = "; ".join(f"version {f['version']}: {f['error']}" for f in report["failed"])
        raise ProtocolError(f"model '{name}' failed to load ({failed}); serving "
                            f"{report['serving'] or 'no version'}")
    return json_response(report)


@router.post("/repository/models/{name}/unload", summary="Unload a model (Triton extension; "
             "answers 409 here)", status_code=409,
             responses={404: error(404), 409: error(409)}, openapi_extra=UNLOAD_DOC)
async def unload(request: Request, name: str) -> Response:
    repo = _authorised(request).repository
    if name not in repo.models and name not in repo.model_names_on_disk():
        repo.get(name)  # the usual 404
    raise ConflictError(
        f"models here follow the repository on disk, so '{name}' cannot be unloaded on its "
        f"own: remove its version directories (or {repo.root / name}) and POST "
        f"/v2/repository/models/{name}/load (or /v1/models/{name}/reload)")
