"""The OpenAPI document (``/openapi.json``, ``/docs``) made to tell the truth about this
process: every status an operation can answer with its body schema, the request bodies and
their media types, the security this instance enforces (an operation documents 401 and a
bearer scheme only when its secret is configured), and limits taken from the settings.

The examples fit the ``breast_cancer`` model that ``anomaly demo`` trains (sklearn's
breast-cancer table, 30 numeric columns): the example row is the table's first benign row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.config import Settings
from service.schemas import (
    ErrorBody,
    InferRequest,
    RepositoryIndexEntry,
    RepositoryIndexRequest,
    RepositoryLoadRequest,
    RepositoryUnloadRequest,
)

#: models the routes reference by $ref without FastAPI seeing them as bodies or responses
REFERENCED: tuple[type[BaseModel], ...] = (InferRequest, RepositoryIndexRequest,
                                           RepositoryLoadRequest, RepositoryUnloadRequest,
                                           RepositoryIndexEntry)

#: The model the examples are for (``anomaly demo`` writes it to models/breast_cancer).
EXAMPLE_MODEL = "breast_cancer"
EXAMPLE_ROW: dict[str, float] = {
    "mean_radius": 13.54, "mean_texture": 14.36, "mean_perimeter": 87.46, "mean_area": 566.3,
    "mean_smoothness": 0.09779, "mean_compactness": 0.08129, "mean_concavity": 0.06664,
    "mean_concave_points": 0.04781, "mean_symmetry": 0.1885,
    "mean_fractal_dimension": 0.05766, "radius_error": 0.2699, "texture_error": 0.7886,
    "perimeter_error": 2.058, "area_error": 23.56, "smoothness_error": 0.008462,
    "compactness_error": 0.0146, "concavity_error": 0.02387, "concave_points_error": 0.01315,
    "symmetry_error": 0.0198, "fractal_dimension_error": 0.0023, "worst_radius": 15.11,
    "worst_texture": 19.26, "worst_perimeter": 99.7, "worst_area": 711.2,
    "worst_smoothness": 0.144, "worst_compactness": 0.1773, "worst_concavity": 0.239,
    "worst_concave_points": 0.1288, "worst_symmetry": 0.2977,
    "worst_fractal_dimension": 0.07259,
}
EXAMPLE_CSV = ",".join(EXAMPLE_ROW) + "\n" + ",".join(map(repr, EXAMPLE_ROW.values())) + "\n"
#: the preprocessed tensor of one breast_cancer row: standardised columns, 0 = training mean
EXAMPLE_INFER: dict[str, Any] = {"inputs": [
    {"name": "x", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]}

#: What each error status means, for every operation that can answer it.
ERRORS: dict[int, str] = {
    400: "malformed request (an Open Inference Protocol error, or a malformed multipart "
         "body)",
    401: "missing or wrong bearer token",
    404: "no such model or version is loaded (or no such model directory)",
    409: "the request conflicts with how this server manages models",
    408: "the request body did not arrive within the configured body timeout",
    413: "body, rows, images or pixels over the configured limits",
    415: "unsupported Content-Type",
    422: "the request is well formed but its values do not fit (columns, types, image size "
         "and mode, query parameters)",
    500: "internal error (a bug; the traceback is in the service log under the request id)",
    503: "the model's queue is full; retry after Retry-After seconds",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
}

#: openapi_extra of an operation that needs the API key (when one is configured) ...
NEEDS_API_KEY: dict[str, Any] = {"x-anomaly-auth": "api_key"}
#: ... or the metrics token.
NEEDS_METRICS_TOKEN: dict[str, Any] = {"x-anomaly-auth": "metrics_token"}
_SCHEMES = {
    "api_key": "the service's API key (--api-key / ANOMALY_API_KEY)",
    "metrics_token": "the metrics token (--metrics-token / ANOMALY_METRICS_TOKEN)",
}


def error(status: int) -> dict[str, Any]:
    """The response object of one error status (ErrorBody, plus the headers it carries)."""
    doc: dict[str, Any] = {"model": ErrorBody, "description": ERRORS[status]}
    if status in _HEADERS:
        doc["headers"] = _HEADERS[status]
    return doc


def responses(ok: type[BaseModel] | None, *statuses: int, ok_description: str = "OK",
              ok_content: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: 200 with ``ok`` (or ``ok_content``), and the error statuses
    it can answer besides 401 (added by :func:`finish` where a secret applies)."""
    out: dict[int | str, dict[str, Any]] = {200: {"description": ok_description}}
    if ok is not None:
        out[200]["model"] = ok
    if ok_content is not None:
        out[200]["content"] = ok_content
    for status in statuses:
        out[status] = error(status)
    return out


def versioned(base: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The responses of an operation whose path has ``{version}``: also 422 when it is not
    an integer."""
    return {**base, 422: error(422)}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve :func:`finish`'s document (built once, on first request) from ``app``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            finish(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010  (FastAPI's documented override)


def finish(schema: dict[str, Any], settings: Settings) -> None:
    """Make the generated document describe this instance: security and 401 where a secret is
    configured, limits from the settings, examples on the path parameters, and none of
    FastAPI's default 422 bodies (errors here are always :class:`ErrorBody`)."""
    secrets: dict[str, str | None] = {"api_key": settings.api_key_value(),
                                      "metrics_token": settings.metrics_token_value()}
    used: set[str] = set()
    limits: dict[str, Callable[[dict[str, Any]], None]] = {
        "mc_samples": lambda s: s.update(maximum=settings.max_mc_samples)}
    for path, item in schema.get("paths", {}).items():
        for op in item.values():
            auth = op.pop("x-anomaly-auth", None)
            if auth is not None and secrets[auth] is not None:
                used.add(auth)
                op["security"] = [{auth: []}]
                op["responses"]["401"] = _plain(error(401))
            default_422 = op["responses"].get("422", {})
            if "HTTPValidationError" in str(default_422):
                del op["responses"]["422"]
            for param in op.get("parameters", []):
                if param["name"] in limits:
                    limits[param["name"]](param["schema"])
                if param["in"] == "path":
                    param["example"] = EXAMPLE_MODEL if param["name"] == "name" else 1
            _limit_rows(path, op, settings.max_items_per_request)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    # the bodies the routes document by $ref (they parse them by hand: see service.schemas)
    _, defs = models_json_schema([(m, "validation") for m in REFERENCED],
                                 ref_template="#/components/schemas/{model}")
    schemas.update(defs.get("$defs", {}))
    if used:
        components["securitySchemes"] = {
            name: {"type": "http", "scheme": "bearer", "description": _SCHEMES[name]}
            for name in sorted(used)}


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """A response object for the finished document (``model`` resolved to its schema)."""
    out = {"description": doc["description"], "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    if "headers" in doc:
        out["headers"] = doc["headers"]
    return out


def _limit_rows(path: str, op: dict[str, Any], limit: int) -> None:
    """The scoring body's ``rows`` takes at most ``max_items_per_request`` items."""
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    rows = body.get("schema", {}).get("properties", {}).get("rows")
    if rows is not None and path.endswith("/score"):
        rows["maxItems"] = limit
