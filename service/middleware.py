"""One pure-ASGI middleware for every HTTP request: a request id (``X-Request-ID``, taken
from the caller when it is sane), the arrival time, the body size limit, and the JSON access
log line. Pure ASGI rather than ``BaseHTTPMiddleware`` because it runs on every request and
must cost microseconds.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anomaly.errors import PayloadTooLargeError
from service import logs

_SANE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
#: Generated ids: a random per-process prefix plus a counter (no urandom call per request).
_PREFIX = uuid.uuid4().hex[:12]
_counter = itertools.count(1)


class RequestContextMiddleware:
    """Sets ``scope["state"]["request_id"]`` and ``["t0"]`` (perf_counter seconds at
    arrival), caps the request body at ``max_body_bytes`` (PayloadTooLargeError -> 413 when
    a handler reads past it, or at once when Content-Length says so), and logs one line
    (status 499 when the client hung up while its body was being read)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, access_log: bool = True) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        request_id = b""
        declared = -1
        for key, value in scope["headers"]:
            if key == b"x-request-id" and _SANE_ID.match(value):
                request_id = value
            elif key == b"content-length" and value.isdigit():
                declared = int(value)
        rid = request_id.decode() if request_id else f"{_PREFIX}-{next(_counter):x}"
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["t0"] = t0
        limit = self.max_body_bytes
        received = 0
        status = 0
        disconnected = False

        async def limited_receive() -> Message:
            nonlocal received, disconnected
            if declared > limit:
                raise PayloadTooLargeError(
                    f"request body of {declared} bytes is over the limit of {limit} bytes; "
                    "send fewer samples per request")
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            elif message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(
                        f"request body is over the limit of {limit} bytes; send fewer "
                        "samples per request")
            return message

        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), rid_header]}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            if self.access_log:
                # 499 (nginx's "client closed request"): the client hung up while the body
                # was being read, whatever the handler then answered to nobody
                code = 499 if disconnected else status or 500
                method, path = scope["method"], scope["path"]
                logs.access.write(f"{method} {path} {code}", {
                    "request_id": rid,
                    "method": method,
                    "path": path,
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "status": code,
                    "duration_ms": round((time.perf_counter() - t0) * 1e3, 3),
                    "bytes_in": received,
                    "client": (scope.get("client") or ("", 0))[0],
                })
