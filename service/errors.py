"""The one place where errors become HTTP responses: always ``{"error": "<message>"}`` with
the status :data:`STATUS` gives the error's class, never a stack trace (those go to the log).
The errors only the service raises live here too.
"""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from anomaly.errors import (
    AnomalyError,
    BundleError,
    InputError,
    MissingExtraError,
    PayloadTooLargeError,
)

log = logging.getLogger("service.errors")


class UnsupportedMediaTypeError(InputError):
    """The request body's Content-Type is not one this endpoint reads."""


class ProtocolError(InputError):
    """An Open Inference Protocol request that is malformed or does not fit the model's
    metadata (datatype, shape, input names): 400, as Triton and KServe answer it."""


class RequestTimeoutError(InputError):
    """The request's body did not arrive within the service's ``body_timeout_s``."""


class ConflictError(AnomalyError):
    """The request conflicts with how this server manages its models (an explicit unload of
    a model whose versions follow the repository on disk)."""


class ModelNotFoundError(AnomalyError, LookupError):
    """No model (or version) of that name is loaded."""


class OverloadedError(AnomalyError):
    """The scoring queue is full; the caller should retry after a short wait."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuthError(AnomalyError):
    """Missing or wrong API key."""


#: HTTP status per error class; the most specific class listed wins (looked up along the
#: exception's MRO), anything else of ours is a 500.
STATUS: dict[type[AnomalyError], int] = {
    ProtocolError: 400,
    AuthError: 401,
    ModelNotFoundError: 404,
    RequestTimeoutError: 408,
    ConflictError: 409,
    UnsupportedMediaTypeError: 415,
    PayloadTooLargeError: 413,
    InputError: 422,
    OverloadedError: 503,
    BundleError: 500,
    MissingExtraError: 500,
}


def status_of(exc: AnomalyError | type[AnomalyError]) -> int:
    """The HTTP status of one of our errors (or error classes)."""
    cls = exc if isinstance(exc, type) else type(exc)
    for klass in cls.__mro__:
        if klass in STATUS:
            return STATUS[klass]
    return 500


#: Longest error message a response carries, in characters: messages quote a client's values
#: cut short (:func:`anomaly.errors.quoted`); this bounds any that does not.
MAX_MESSAGE = 4096


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> Response:
    """A JSON error body; ``content-type: application/json``."""
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}... (message cut: {len(message):,} characters)"
    return Response(json.dumps({"error": message}), status_code=status, headers=headers,
                    media_type="application/json")


def response_for(exc: AnomalyError) -> Response:
    """Map one of our errors to its HTTP response (status from the class, plus the headers
    that status calls for)."""
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RequestTimeoutError):  # the rest of its body must not be read as
        headers["Connection"] = "close"  # the next request on this connection
    return error_response(status_of(exc), str(exc), headers)


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors -> one line naming the parameter."""
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "invalid request: " + "; ".join(parts)


def respond(request: Request, exc: Exception) -> Response:
    """The response for any exception a route raised: ours by their class, FastAPI's
    parameter validation as 422, Starlette's HTTP errors (a malformed multipart body) as they
    are, anything else as a 500 with the request id (a bug: the traceback goes to the log)."""
    if isinstance(exc, AnomalyError):
        # a shed request (503) is an expected outcome, counted as "rejected" and in the access
        # log: an error line for each would flood the log in the very burst it sheds
        if status_of(exc) >= 500 and not isinstance(exc, OverloadedError):
            log.error("request failed: %s", exc, extra={"fields": _request_fields(request)})
        return response_for(exc)
    if isinstance(exc, RequestValidationError):
        return error_response(422, _validation_message(exc))
    if isinstance(exc, StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))
    if isinstance(exc, ClientDisconnect):  # nobody will read it; no traceback for a hang-up
        return error_response(400, "the client closed the connection before sending the "
                                   "whole request body")
    log.exception("unhandled error", exc_info=exc, extra={"fields": _request_fields(request)})
    rid = request.scope.get("state", {}).get("request_id", "")
    return error_response(500, f"internal error (request id {rid}); see the service log")


def install(app: FastAPI) -> None:
    """Route every exception through :func:`respond` (the hot paths of
    :mod:`service.hotpath` call it directly)."""

    async def handler(request: Request, exc: Exception) -> Response:
        return respond(request, exc)

    # every class but Exception is handled in Starlette's exception middleware; Exception's
    # handler runs in its server-error middleware, which re-raises after answering (uvicorn
    # then logs a traceback): right for bugs, not for a client that hung up
    for kind in (AnomalyError, RequestValidationError, StarletteHTTPException,
                 ClientDisconnect, Exception):
        app.add_exception_handler(kind, handler)


def _request_fields(request: Request) -> dict[str, str]:
    return {"request_id": str(request.scope.get("state", {}).get("request_id", "")),
            "path": request.url.path}
