"""One socket write per HTTP response: uvicorn's httptools protocol with writes coalesced.

Why: uvicorn writes a response's head (status line and headers) and its body with two
``transport.write`` calls, and on an idle socket each is its own ``send`` system call. On
loopback and on a busy host those two sends were the largest single cost of a one-row scoring
request: 20% of the event-loop thread's time under 64-client load (py-spy; the head's send
alone 15%, as it wakes the reading peer), more than the row encoder, the batcher hand-off and
the access log together. Two segments also cost the client a second read.

:class:`CoalescingTransport` collects what is written during one event-loop iteration and
sends it with one ``write`` at the start of the next (``loop.call_soon``), or at once when it
reaches :data:`FLUSH_BYTES` or the connection is closed, so order and bytes are unchanged.
A plain response (head + body written in the same task step, as Starlette's ``Response``
does) becomes one send; a streaming response flushes each time its task yields.
:class:`HttpProtocol` is uvicorn's ``HttpToolsProtocol`` over that transport; ``anomaly
serve`` runs it, and ``uvicorn service.main:app --http service.transport:HttpProtocol``
gets it too. Measured in ``benchmarks/service_load.py`` (README, "Service load").
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Buffered bytes at which a write is sent at once instead of at the next loop iteration
#: (large bodies gain nothing from waiting, and the buffer stays small).
FLUSH_BYTES = 64 * 1024


class CoalescingTransport:
    """A write-coalescing view of an asyncio transport: ``write`` buffers, everything else
    (``is_closing``, ``pause_reading``, ``get_extra_info``, ``abort``...) is the transport's
    own. ``close`` sends what is buffered first."""

    __slots__ = ("_buffer", "_loop", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered, in one write (dropped when the connection is closing, as a
        closed transport would drop it)."""
        buffer = self._buffer
        if not buffer:
            return
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._size = 0
        if not self.transport.is_closing():
            self.transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # the request cycles and the keep-alive timer write and close through this; flow
        # control (the FlowControl made above) keeps the real transport
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
