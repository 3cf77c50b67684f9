"""One pure-ASGI middleware for every HTTP request: a request id (``X-Request-ID``, taken
from the caller when it is sane), the arrival time, the body size limit, and the JSON access
log line. Pure ASGI rather than ``BaseHTTPMiddleware`` because it runs on every request and
must cost microseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anomaly.errors import PayloadTooLargeError
from service import logs
from service.errors import RequestTimeoutError, UnsupportedMediaTypeError

_SANE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
#: Generated ids: a random per-process prefix plus a counter (no urandom call per request).
_PREFIX = uuid.uuid4().hex[:12]
_counter = itertools.count(1)


class BodyDeadlines:
    """Cancels body reads that run past their request's deadline (arrival + ``timeout_s``).

    Why: a client that stops sending mid-body, or vanishes without closing its connection,
    would otherwise keep its request waiting forever, holding its place in the model's
    queue capacity and its lease on the model version (which blocks that version's
    unloading). ``asyncio.timeout`` per read costs 5-7 us (a libuv timer each); here a read
    only registers its task in a dict, and one watchdog task per event loop looks at the
    reads in progress every ``interval_s`` seconds, so a late body is cut off within
    ``interval_s`` of its deadline."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.interval_s = min(1.0, timeout_s / 4)
        self.reading: dict[asyncio.Task[object], float] = {}  # task -> deadline
        self.expired: set[asyncio.Task[object]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._watchdog is None or self._watchdog.done():
            self._loop = loop
            self._watchdog = loop.create_task(self._watch(), name="body-deadlines")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.perf_counter()
            late = [task for task, deadline in self.reading.items() if deadline <= now]
            for task in late:
                del self.reading[task]
                self.expired.add(task)
                task.cancel()


class RequestContextMiddleware:
    """Sets ``scope["state"]["request_id"]`` and ``["t0"]`` (perf_counter seconds at
    arrival), caps the request body at ``max_body_bytes`` (PayloadTooLargeError -> 413 when
    a handler reads past it, or at once when Content-Length says so), refuses a compressed
    body (``Content-Encoding``, 415) when a handler reads it, and logs one line
    (status 499 when the client hung up while its body was being read)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, access_log: bool,
                 deadlines: BodyDeadlines) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.deadlines = deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        request_id = b""
        declared = -1
        encoding = b""
        for key, value in scope["headers"]:
            if key == b"x-request-id" and _SANE_ID.match(value):
                request_id = value
            elif key == b"content-length" and value.isdigit():
                declared = int(value)
            elif key == b"content-encoding":
                encoding = value.strip().lower()
        rid = request_id.decode() if request_id else f"{_PREFIX}-{next(_counter):x}"
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["t0"] = t0
        limit = self.max_body_bytes
        received = 0
        status = 0
        disconnected = False
        body_done = False
        deadlines = self.deadlines
        deadline = t0 + deadlines.timeout_s

        async def limited_receive() -> Message:
            nonlocal received, disconnected, body_done
            if declared > limit:
                raise PayloadTooLargeError(
                    f"request body of {declared} bytes is over the limit of {limit} bytes; "
                    "send fewer samples per request")
            if encoding and encoding != b"identity":
                # read as it is, a gzip body is "not valid JSON" or a 500 from the CSV
                # reader; decompressing would let a small body grow past the size limit
                raise UnsupportedMediaTypeError(
                    f"Content-Encoding '{encoding.decode('latin-1')}' is not supported: send "
                    "the body uncompressed")
            if body_done:  # e.g. a disconnect listener: no deadline once the body is in
                message = await receive()
            else:
                message = await _receive_by(deadline, deadlines, receive)
            if message["type"] == "http.disconnect":
                disconnected = True
            elif message["type"] == "http.request":
                body_done = not message.get("more_body", False)
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


async def _receive_by(deadline: float, deadlines: BodyDeadlines, receive: Receive) -> Message:
    """``receive()``, or RequestTimeoutError once ``deadline`` (perf_counter s) has passed."""
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - ASGI apps always run in a task
        return await receive()
    deadlines.ensure_running()
    deadlines.reading[task] = deadline
    try:
        return await receive()
    except asyncio.CancelledError:
        if task not in deadlines.expired:
            raise  # cancelled by someone else (shutdown): not ours to swallow
        deadlines.expired.discard(task)
        task.uncancel()
        raise RequestTimeoutError(
            f"the request body did not arrive within {deadlines.timeout_s:g} s of the "
            "request; send it faster, or in smaller requests") from None
    finally:
        deadlines.reading.pop(task, None)
