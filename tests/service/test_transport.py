"""One socket write per HTTP response (service/transport.py): the coalescing transport keeps
bytes and order, and a real uvicorn server on the service's protocol answers plain, streamed
and pipelined requests intact with one write per plain response (two on uvicorn's own)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from starlette.responses import Response, StreamingResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.transport import FLUSH_BYTES, CoalescingTransport, HttpProtocol


class RecordingTransport:
    """The transport side the coalescer talks to: records writes and closes."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.events.append(bytes(data))

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


async def _one_iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_writes_of_one_iteration_go_out_as_one_in_order() -> None:
    async def main() -> list[Any]:
        inner = RecordingTransport()
        t = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"")
        t.write(b"body")
        assert inner.events == []  # nothing sent inside the step that wrote
        await _one_iteration()
        t.write(b"next")
        await _one_iteration()
        return inner.events

    assert asyncio.run(main()) == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_close_sends_the_buffer_first_and_a_closing_transport_drops_it() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        inner = RecordingTransport()
        t = CoalescingTransport(inner, loop)  # type: ignore[arg-type]
        t.write(b"head")
        t.write(b"tail")
        t.close()
        await _one_iteration()  # the scheduled flush finds nothing left
        closed = RecordingTransport()
        closed.closing = True
        c = CoalescingTransport(closed, loop)  # type: ignore[arg-type]
        c.write(b"late")
        await _one_iteration()
        return inner.events, closed.events

    sent, dropped = asyncio.run(main())
    assert sent == [b"headtail", "close"]
    assert dropped == []


def test_large_writes_go_out_at_once_and_the_rest_is_delegated() -> None:
    async def main() -> tuple[list[Any], Any]:
        inner = RecordingTransport()
        t = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"h")
        t.write(b"x" * FLUSH_BYTES)
        sent_now = list(inner.events)
        t.writelines([b"a", b"b"])
        await _one_iteration()
        return sent_now + inner.events[1:], t.get_extra_info("peername")

    events, peer = asyncio.run(main())
    assert events == [b"h" + b"x" * FLUSH_BYTES, b"ab"]
    assert peer == ("127.0.0.1", 1234)


# --- a real uvicorn server ---------------------------------------------------------------------

WRITES: list[int] = []


class _Counting:
    """Counts the writes that reach the socket's transport."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._t = transport

    def write(self, data: bytes) -> None:
        WRITES.append(len(data))
        self._t.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class CountingService(HttpProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Counting(transport))  # type: ignore[arg-type]


class CountingStock(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Counting(transport))  # type: ignore[arg-type]


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> Response:
        return Response(f'{{"got": {body["n"]}}}', media_type="application/json")

    @app.get("/big")
    async def big() -> Response:  # over FLUSH_BYTES: sent at once, not held for the loop
        return Response(bytes(range(256)) * 1200, media_type="application/octet-stream")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"one,", b"two,", b"three"):
                yield part
                await asyncio.sleep(0.01)
        return StreamingResponse(chunks(), media_type="text/plain")

    return app


def _serve(protocol: type[asyncio.Protocol]) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port, http=protocol,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


@pytest.fixture(params=[CountingService, CountingStock], ids=["service", "stock"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    protocol = request.param
    yield from ((protocol.__name__, port) for port in _serve(protocol))


def _read_response(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, body, rest) of one Content-Length or chunked response."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, data = data.split(b"\r\n\r\n", 1)
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while b"0\r\n\r\n" not in data:
            data += sock.recv(65536)
        body, rest = data.split(b"0\r\n\r\n", 1)
        return head, body, rest
    length = int(next(line.split(b":", 1)[1] for line in lower.split(b"\r\n")
                      if line.startswith(b"content-length:")))
    while len(data) < length:
        data += sock.recv(65536)
    return head, data[:length], data[length:]


def test_real_server_answers_pipelined_and_streamed_requests(served: tuple[str, int]) -> None:
    name, port = served
    posts = b"".join(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in (b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        WRITES.clear()
        sock.sendall(posts)  # three requests pipelined on one keep-alive connection
        rest = b""
        bodies = []
        for _ in range(3):
            head, body, rest = _read_response(sock, rest)
            assert head.startswith(b"HTTP/1.1 200")
            bodies.append(body)
        writes_per_response = len(WRITES) / 3
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        _, large, rest = _read_response(sock, rest)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head, streamed, _ = _read_response(sock, rest)
    assert bodies == [b'{"got": 1}', b'{"got": 2}', b'{"got": 3}']
    assert large == bytes(range(256)) * 1200
    assert head.startswith(b"HTTP/1.1 200")
    # chunked framing intact: "4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n"
    assert streamed == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n"
    assert writes_per_response == (1 if name == "CountingService" else 2)
