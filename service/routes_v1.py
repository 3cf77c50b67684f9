"""The product API: list models, reload them, score rows (JSON or CSV) and images (raw body
or multipart), with explanations on request."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from anomaly.errors import InputError, PayloadTooLargeError, listed, near_names
from anomaly.inference import ScoreResult
from anomaly.preprocessing import ImagePreprocessor, TabularPreprocessor, rejected_rows_error
from service.batching import Admission
from service.errors import UnsupportedMediaTypeError
from service.openapi import EXAMPLE_CSV, EXAMPLE_ROW, NEEDS_API_KEY, responses
from service.repository import ModelVersion
from service.schemas import ModelList, ReloadReport, ScoreResponse
from service.state import (
    VERSION_QUERY,
    QueryParam,
    check_api_key,
    finite,
    get_state,
    json_response,
    loads,
    refuse_unknown_query,
    scoring_request,
)

router = APIRouter(prefix="/v1", tags=["v1"])

#: Decode images and parse CSV bodies on a worker thread above this many bytes (small ones
#: are faster inline).
INLINE_DECODE_BYTES = 256 * 1024

SCORE_BODY_DOC: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["rows"],
                                     "additionalProperties": False, "properties": {
        "rows": {"type": "array", "minItems": 1, "items": {
            "type": "object", "minProperties": 1,
            "additionalProperties": {"type": ["number", "string", "boolean"]}},
            "description": "one object per row, {column: value}; the model's columns are in "
                           "GET /v1/models"}}},
        "example": {"rows": [EXAMPLE_ROW]}},
    "text/csv": {"schema": {"type": "string", "description": "a header row naming the "
                            "model's columns, then one line per row"},
                 "example": EXAMPLE_CSV},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "minItems": 1,
                  "items": {"type": "string", "format": "binary"}}}}},
}}}


EXPLAIN = QueryParam("explain", bool, "add the top-k columns (rows) or the heat map as a "
                     "base64 PNG (images)")
TOP_K = QueryParam("top_k", int, "columns per row with explain (default: the service's "
                   "explain_top_k)", 1, 1000)
RAW_MAP = QueryParam("raw_map", bool, "with explain on images, also the raw (H, W) map in "
                     "nats per pixel")
SEED = QueryParam("seed", int, "noise seed for every sample of the request (default: the "
                  "service's)", 0, 2**63 - 1)
MC_SAMPLES = QueryParam("mc_samples", int, "latent samples L (default: the bundle's; at most "
                        "the service's max_mc_samples)", 1)
RESIZE = QueryParam("resize", bool, "images: resize and convert an image of another size or "
                    "colour mode to the model's (default: the resize_images setting; without "
                    "it such an image gets 422 saying what the model takes)")
IGNORE_UNKNOWN = QueryParam("ignore_unknown_columns", bool, "rows: drop columns the model "
                            "does not know (default: the ignore_unknown_columns setting; "
                            "without it they get 422 naming them)")
SCORE_SE = QueryParam("score_se", bool, "add score_se, each score's Monte Carlo standard "
                      "error in nats (null when L = 1 or the bundle predates it)")
SCORE_QUERY = (EXPLAIN, TOP_K, RAW_MAP, SEED, VERSION_QUERY, MC_SAMPLES, RESIZE, IGNORE_UNKNOWN,
               SCORE_SE)


@router.get("/models", summary="Loaded models, their versions, input schemas and thresholds",
            responses=responses(ModelList), openapi_extra=NEEDS_API_KEY)
async def list_models(request: Request) -> Response:
    state = get_state(request)
    check_api_key(state, request)  # column statistics and thresholds are model internals
    repo = state.repository
    out = []
    for name, entry in sorted(repo.models.items()):
        latest = entry.latest
        out.append({
            "name": name,
            "ready": latest is not None,
            "default_version": latest.version if latest else None,
            "versions": [mv.describe() for _, mv in sorted(entry.versions.items())],
            "load_errors": [f.describe() for _, f in sorted(entry.failures.items())],
        })
    return json_response({"models": out})


@router.post("/models/{name}/reload", summary="Pick up new, changed or removed versions (admin)",
             responses=responses(ReloadReport, 404, 422, 500), openapi_extra=NEEDS_API_KEY)
async def reload_model(request: Request, name: str, force: bool = False) -> Response:
    """200 with what changed. A version that failed to load is listed under ``failed`` (and
    logged, and counted in ``anomaly_model_load_failures_total``); the previous load of it,
    if any, keeps serving. A broken folder on disk is an outcome to report, not a server
    error: 500 is only for faults of the server itself."""
    state = get_state(request)
    check_api_key(state, request)
    return json_response((await state.repository.reload(name, force=force)).describe())


@router.post("/models/{name}/score", summary="Score rows or images",
             responses=responses(ScoreResponse, 400, 404, 408, 413, 415, 422, 500, 503),
             openapi_extra={**SCORE_BODY_DOC, **NEEDS_API_KEY,
                            "parameters": [p.openapi() for p in SCORE_QUERY]})
async def score(request: Request, name: str) -> Response:
    """Rows: ``application/json`` ``{"rows": [{col: value}, ...]}`` or ``text/csv`` with a
    header. Images: a raw ``image/png`` / ``image/jpeg`` body or ``multipart/form-data`` with
    one or more files. One result per row or image, in order."""
    settings = get_state(request).settings

    async def work(mv: ModelVersion, admission: Admission) -> Response:
        refuse_unknown_query(request, SCORE_QUERY)
        explain = EXPLAIN.read(request)
        raw_map = RAW_MAP.read(request)
        top_k = TOP_K.read(request) or settings.explain_top_k
        seed = SEED.read(request)
        n_mc = MC_SAMPLES.read(request, settings.max_mc_samples) \
            or mv.scorer.mc_samples  # L, latent samples per input
        strict = _Strictness(RESIZE.read(request, default=settings.resize_images),
                             IGNORE_UNKNOWN.read(request,
                                                 default=settings.ignore_unknown_columns))
        inputs, filenames = await _read_inputs(request, mv, strict)
        s = settings.default_seed if seed is None else seed
        seeds = [s] * len(inputs)
        # JSON rows are encoded by the batcher, with the rest of their batch
        result = await (admission.submit(inputs, seeds, n_mc) if isinstance(inputs, np.ndarray)
                        else admission.submit_rows(inputs, seeds, n_mc))
        items = _items(mv, result, SCORE_SE.read(request))
        if filenames:
            for item, fname in zip(items, filenames, strict=True):
                item["filename"] = fname
        if explain:
            await _explain(mv, result, items, top_k, raw_map)
        return json_response({"model": mv.name, "version": mv.version, "results": items})

    return await scoring_request(request, name, None, work, version_from_query=True)


def _items(mv: ModelVersion, result: ScoreResult, with_se: bool = False
           ) -> list[dict[str, Any]]:
    threshold = finite(result.threshold)
    items = [{"score": finite(s), "threshold": threshold, "is_anomaly": bool(a),
              "p_value": finite(p), "model": mv.name, "version": mv.version,
              "mc_samples": result.mc_samples}
             for s, a, p in zip(result.scores.tolist(), result.is_anomaly.tolist(),
                                result.p_values.tolist(), strict=True)]
    if with_se:  # Monte Carlo standard error (nats); null if L = 1 or the bundle predates it
        ses = result.score_se.tolist() if result.score_se is not None else [None] * len(items)
        for item, se in zip(items, ses, strict=True):
            item["score_se"] = None if se is None else finite(se)
    return items


async def _explain(mv: ModelVersion, result: ScoreResult, items: list[dict[str, Any]],
                   k: int, raw_map: bool) -> None:
    # the full graph, off the event loop: inline, 500 rows at L = 1024 held every other
    # request (a health check included) for 350 ms
    await asyncio.to_thread(result.explanation.arrays)
    if isinstance(mv.scorer.preprocessor, TabularPreprocessor):
        for item, top in zip(items, mv.scorer.top_columns(result, k), strict=True):
            item["top_columns"] = [{"column": c, "score": finite(v)} for c, v in top]
        return
    heat = mv.scorer.heatmaps(result)  # (B, H, W) nats per pixel
    pngs = await asyncio.to_thread(_heatmap_pngs, heat)
    for i, item in enumerate(items):
        item["heatmap_png"] = base64.b64encode(pngs[i]).decode("ascii")
        if raw_map:
            item["heatmap"] = np.where(np.isfinite(heat[i]), heat[i], 0.0).tolist()


def _heatmap_pngs(heat: np.ndarray) -> list[bytes]:
    from anomaly.plots import heatmap_png  # matplotlib: loaded on first explained image

    return [heatmap_png(h) for h in heat]


@dataclass(frozen=True)
class _Strictness:
    """What a request lets the service guess: resize/convert images, drop unknown columns."""

    resize: bool
    ignore_unknown_columns: bool


async def _read_inputs(request: Request, mv: ModelVersion, strict: _Strictness
                       ) -> tuple[np.ndarray | list[Any], list[str]]:
    """The request body -> preprocessed x (B, D) float32, or for a JSON body its checked
    rows (the batcher encodes them), plus file names for multipart."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    prep = mv.scorer.preprocessor
    limit = get_state(request).settings.max_items_per_request
    if ctype == "multipart/form-data" or ctype.startswith("image/"):
        if not isinstance(prep, ImagePreprocessor):
            raise InputError(f"model '{mv.name}' scores rows: send application/json "
                             "{\"rows\": [...]} or text/csv, not images")
        if ctype == "multipart/form-data":
            form = await request.form(max_files=limit, max_fields=limit)
            try:
                uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                if not uploads:
                    raise InputError("the multipart body holds no files; attach one or more "
                                     "images as file parts")
                blobs = [await u.read() for u in uploads]
                names = [u.filename or f"image {i}" for i, u in enumerate(uploads)]
            finally:
                await form.close()  # spooled temporary files
        else:
            blobs, names = [await request.body()], []
        if len(blobs) > limit:
            raise PayloadTooLargeError(f"{len(blobs)} images in one request; the limit is "
                                       f"{limit}")
        if sum(len(b) for b in blobs) > INLINE_DECODE_BYTES:
            return await asyncio.to_thread(prep.transform_images, blobs, strict.resize), names
        return prep.transform_images(blobs, strict.resize), names
    if ctype in ("application/json", "text/csv", "application/csv"):
        if not isinstance(prep, TabularPreprocessor):
            raise InputError(f"model '{mv.name}' scores images: send image/png, image/jpeg "
                             "or multipart/form-data files, not rows")
        body = await request.body()
        if ctype == "application/json":
            rows = _json_rows(body, limit)
            if not strict.ignore_unknown_columns:
                _check_unknown(prep, prep.unknown_columns(rows))
            if b"true" in body or b"false" in body:  # no JSON boolean without the literal
                prep.reject_booleans(rows)  # JSON true is not 1
            return rows, []
        if len(body) > INLINE_DECODE_BYTES:  # parsing a large body would hold the loop
            return await asyncio.to_thread(_csv_x, prep, body, limit,
                                           strict.ignore_unknown_columns), []
        return _csv_x(prep, body, limit, strict.ignore_unknown_columns), []
    raise UnsupportedMediaTypeError(
        f"unsupported Content-Type '{ctype or '(none)'}': send application/json or text/csv "
        "rows, or image/png, image/jpeg or multipart/form-data images")


def _json_rows(body: bytes, limit: int) -> list[Any]:
    payload = loads(body, "the body")
    if not isinstance(payload, dict) or "rows" not in payload:
        raise InputError("expected a JSON object {\"rows\": [{\"column\": value, ...}, ...]}")
    if len(payload) > 1:
        _refuse_body_keys([k for k in payload if k != "rows"], payload)
    rows = payload["rows"]
    if not isinstance(rows, list):
        raise InputError("\"rows\" must be a list of objects")
    if len(rows) > limit:
        raise PayloadTooLargeError(f"{len(rows)} rows in one request; the limit is {limit}")
    return rows


def _refuse_body_keys(keys: list[str], payload: dict[str, Any]) -> None:
    """422 for a body key other than ``rows``: options are query parameters, and an option
    sent in the body (``"mc_samples": 64``) would otherwise be ignored without a word, the
    client believing it was applied."""
    options = {q.name for q in SCORE_QUERY}
    misplaced = [k for k in keys if k in options]
    if misplaced:
        k = misplaced[0]
        value = payload[k]
        shown = (str(value).lower() if isinstance(value, bool)
                 else str(value) if isinstance(value, int | float) else "...")
        raise InputError(f"'{k}' is a query parameter, not a body field: POST "
                         f".../score?{k}={shown} with the body {{\"rows\": [...]}}")
    raise InputError(f"unknown key(s) {listed(keys)} in the body: it holds {{\"rows\": "
                     f"[...]}} only; the options are query parameters "
                     f"({', '.join(q.name for q in SCORE_QUERY)})")


def _check_unknown(prep: TabularPreprocessor, unknown: list[str]) -> None:
    if unknown:
        near = near_names([c for c in prep.column_names if c not in unknown], unknown)
        raise InputError(f"unknown column(s) {listed(unknown)}{near}: the model's columns "
                         f"are {listed(prep.column_names)}; fix the names, or add "
                         "?ignore_unknown_columns=true to drop them")


def _csv_x(prep: TabularPreprocessor, body: bytes, limit: int, ignore_unknown: bool
           ) -> np.ndarray:
    """A CSV body -> x (B, D), read as batch scoring reads CSV files (fields as text, through
    the same Arrow encoder), so a CSV row scores the same posted or in a file."""
    import pyarrow as pa

    from anomaly.batch.dialect import cr_only, to_utf8
    from anomaly.batch.formats import header_is_data
    from anomaly.batch.sources import check_unique_names, csv_header_names, read_csv_text

    if not body.strip():
        raise InputError("the CSV body is empty; send a header row and at least one row")
    body = to_utf8(body)  # an Excel export in cp1252 reads as its file does in batch scoring
    if cr_only(body[:1 << 16]):
        body = body.replace(b"\r", b"\n")
    try:
        names = csv_header_names(body)
        table = read_csv_text(body, [c for c in prep.column_names if c in names])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot parse the CSV body: {exc}") from exc
    if header_is_data(names, prep.column_names) and not set(prep.column_names) <= set(names):
        raise InputError("the body's first line is data, not a header (every name is a "
                         "number): send the header row first; the model expects "
                         f"{listed(prep.column_names)}")
    if not ignore_unknown:
        _check_unknown(prep, [n for n in names if n not in prep.accepted_columns])
    if table.num_rows == 0:
        raise InputError("the CSV body has a header but no rows")
    missing = [c for c in prep.column_names if c not in names]
    if missing:
        raise InputError(f"missing column(s) {listed(missing)}{near_names(missing, names)}; "
                         f"the model expects {listed(prep.column_names)}")
    check_unique_names(names, prep.column_names, "the CSV header")
    if table.num_rows > limit:
        raise PayloadTooLargeError(f"{table.num_rows} rows in one request; the limit is "
                                   f"{limit}")
    x, reasons = prep.encode_arrow(table, from_csv=True)
    bad = {i: r for i, r in enumerate(reasons) if r is not None}
    if bad:
        raise rejected_rows_error(bad)
    return x
