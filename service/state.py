"""What every route needs: the service's state, the API-key check, and the accounting of a
scoring request (``anomaly_requests_total`` by outcome, ``anomaly_request_duration_seconds``)
around the work done on a leased model version.
"""

from __future__ import annotations

import difflib
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from anomaly.errors import QUOTE_LIMIT, AnomalyError, InputError, listed, quoted
from service.batching import Admission
from service.config import Settings
from service.errors import AuthError, OverloadedError, status_of
from service.metrics import ServiceMetrics
from service.repository import ModelRepository, ModelVersion


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics
    repository: ModelRepository


def get_state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState` (``app.service_state``, set by ``create_app``: a plain
    attribute, read several times per request, where ``app.state`` is a dynamic lookup)."""
    state: ServiceState = request.scope["app"].service_state
    return state


def check_api_key(state: ServiceState, request: Request) -> None:
    """Raise AuthError unless the request carries ``Authorization: Bearer <key>`` (when a
    key is configured). Constant-time comparison."""
    _check_bearer(request, state.settings.api_key_value(), "API key")


def check_metrics_token(state: ServiceState, request: Request) -> None:
    """``GET /metrics``: the separate metrics token, when one is configured (a scraper needs
    no scoring rights, and the API key need not sit in the Prometheus config)."""
    _check_bearer(request, state.settings.metrics_token_value(), "metrics token")


def _check_bearer(request: Request, secret: str | None, what: str) -> None:
    if secret is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(f"missing {what}: send 'Authorization: Bearer <{what.split()[-1]}>'")
    if not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise AuthError(f"wrong {what}")


def outcome_of(exc: BaseException) -> str:
    """The ``outcome`` label for a request that ended in ``exc``."""
    if isinstance(exc, AuthError):
        return "unauthorized"
    if isinstance(exc, ClientDisconnect):
        # the client hung up before its body arrived (logged as 499): its side of the
        # connection failed, not the server, so it must not feed the server-error alert
        return "client_error"
    if isinstance(exc, OverloadedError):
        return "rejected"
    if isinstance(exc, AnomalyError) and 400 <= status_of(exc) < 500:
        return "client_error"
    status = getattr(exc, "status_code", 500)  # starlette's HTTPException (bad multipart)
    return "client_error" if isinstance(status, int) and 400 <= status < 500 else "server_error"


def arrival(request: Request) -> float:
    """perf_counter() when the request arrived (set by the middleware)."""
    t0 = request.scope.get("state", {}).get("t0")
    return float(t0) if t0 is not None else time.perf_counter()


TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def _query(request: Request) -> dict[str, str]:
    """The query string as {key: value}, parsed once per request; InputError when a key is
    given twice (``seed=1&seed=2``: which one was meant is a guess). Parsed by hand:
    FastAPI's per-parameter validation costs more than scoring one row."""
    state = request.scope.setdefault("state", {})
    parsed: dict[str, str] | None = state.get("query")
    if parsed is None:
        raw = request.scope.get("query_string", b"")
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []
        parsed = dict(pairs)
        if len(parsed) != len(pairs):
            _refuse_repeats(pairs)
        state["query"] = parsed
    return parsed


def _refuse_repeats(pairs: list[tuple[str, str]]) -> None:
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    key, given = next((k, v) for k, v in values.items() if len(v) > 1)
    raise InputError(f"query parameter {key} is given {len(given)} times "
                     f"({listed(given, 3)}): give it once")


def query_bool(request: Request, key: str, default: bool = False) -> bool:
    """A boolean query parameter (true/false, 1/0, yes/no, on/off); InputError otherwise."""
    raw = _query(request).get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise InputError(f"query parameter {key}={quoted(raw)} must be true or false")


def query_int(request: Request, key: str, lo: int, hi: int) -> int | None:
    """An integer query parameter in [lo, hi], or None when absent; InputError otherwise."""
    raw = _query(request).get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"query parameter {key}={quoted(raw)} must be an integer"
                         ) from None
    if not lo <= value <= hi:
        shown = value if len(raw) <= QUOTE_LIMIT else quoted(raw)
        raise InputError(f"query parameter {key}={shown} must be in [{lo}, {hi}]")
    return value


@dataclass(frozen=True)
class QueryParam:
    """One query parameter of an endpoint: parsed (:meth:`read`) and documented in the
    OpenAPI schema (:meth:`openapi`) from these same fields."""

    name: str
    kind: type  # bool or int
    description: str
    minimum: int = 0
    maximum: int | None = None  # None: set per request (from the settings) in read()

    def read(self, request: Request, maximum: int | None = None, default: bool = False
             ) -> Any:
        """The value given (InputError when malformed or out of range); ``default`` (bool)
        or None (int) when the parameter is absent."""
        if self.kind is bool:
            return query_bool(request, self.name, default)
        hi = maximum if maximum is not None else self.maximum
        return query_int(request, self.name, self.minimum, hi if hi is not None else 2**63 - 1)

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = ({"type": "boolean", "default": False} if self.kind is bool
                                  else {"type": "integer", "minimum": self.minimum})
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return {"name": self.name, "in": "query", "required": False, "schema": schema,
                "description": self.description}


def refuse_unknown_query(request: Request, params: Sequence[QueryParam]) -> None:
    """InputError for a query parameter the endpoint does not take: a misspelt option
    (``?mc_sample=64``, ``?explian=true``) would otherwise be ignored without a word."""
    given = _query(request)
    if not given:
        return
    names = [p.name for p in params]
    unknown = [k for k in given if k not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(f"unknown query parameter {quoted(unknown[0])}{hint}: this endpoint "
                         f"takes {', '.join(sorted(names))}")


VERSION_QUERY = QueryParam("version", int, "model version (default: the latest loaded)",
                           1, 2**31)


Work = Callable[[ModelVersion, Admission], Awaitable[Response]]


async def scoring_request(request: Request, name: str, version: int | None, work: Work,
                          version_from_query: bool = False) -> Response:
    """Authenticate, lease the model version (``version``, or :data:`VERSION_QUERY` when
    ``version_from_query``), get it admitted to its batcher (503 when its queue is full),
    run ``work`` on it (which submits through the admission) and count the outcome. Every
    step before ``work`` is synchronous, so a 401, 404 or 503 is answered without reading
    the body and without yielding to other requests. Requests naming an unknown model are
    not counted, and those that reach no loaded version are counted under ``version=""``
    (label values come only from the repository on disk)."""
    state = get_state(request)
    t0 = arrival(request)
    mv: ModelVersion | None = None
    try:
        check_api_key(state, request)
        if version_from_query:
            version = VERSION_QUERY.read(request)
        with state.repository.lease(name, version) as mv:
            admission = mv.batcher.admit()
            try:
                response = await work(mv, admission)
            finally:
                admission.close()
    except BaseException as exc:
        outcome = outcome_of(exc)
        duration = time.perf_counter() - t0
        if mv is not None:
            mv.metrics.finished(outcome, duration)
        elif name in state.repository.models:
            state.metrics.unresolved_request(name, outcome, duration)
        raise
    mv.metrics.finished("ok", time.perf_counter() - t0)
    return response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """JSON without FastAPI's encoder pass (it costs more than the model on small requests).
    orjson writes NaN and infinities as null."""
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


def loads(body: bytes, what: str) -> Any:
    """Parse a JSON request body (strict JSON: no NaN literals); InputError when it is not."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON ({exc})") from exc


def finite(value: float) -> float | None:
    """A float for JSON, or None for NaN/inf (JSON has no literal for them)."""
    v = float(value)
    return v if v == v and v not in (float("inf"), float("-inf")) else None
