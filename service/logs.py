"""Structured logging: every line on stderr is one JSON object, so log shippers need no
parsing rules. Extra fields ride on ``extra={"fields": {...}}``. The access log, one line per
HTTP request, has its own short way to the same stream (:class:`AccessLog`)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import sys
import time
from typing import Any

import orjson

ACCESS_LOGGER = "service.access"


class _Clock:
    """ISO-8601 UTC timestamps with milliseconds, strftime once per second, not per line."""

    def __init__(self) -> None:
        self._last = (-1, "")  # (second, its spelling): one tuple, so threads see a pair

    def stamp(self, created: float) -> str:
        second = int(created)
        last = self._last
        if second != last[0]:
            last = self._last = (second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                       time.gmtime(second)))
        return f"{last[1]}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., **fields}``; a traceback, when
    there is one, goes in ``exc`` (the log is for operators, never for HTTP clients)."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._clock.stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "info") -> None:
    """Send the root logger (uvicorn's and onnxruntime's Python loggers included) to stderr
    as JSON. Idempotent: safe to call from the CLI and again from the app factory."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_anomaly_json", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._anomaly_json = True  # type: ignore[attr-defined]
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # The logging HOWTO's "Optimization": our JSON lines carry none of these, and computing
    # them (a stack walk for the caller) costs more per access-log line than formatting it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # uvicorn's own access lines are replaced by ours (they lack the request id and timing).
    logging.getLogger("uvicorn.access").disabled = True


class AccessLog:
    """Writes the access log's lines: the same JSON as :class:`JsonFormatter` would, but
    formatted in one ``orjson.dumps`` and written once per event-loop iteration for all the
    requests that finished in it, instead of a LogRecord, a handler call and a write syscall
    per request. Why: under load that cost 50 us per request on the load benchmark, a sixth
    of the service's CPU per single-row request (AMD EPYC, 2 cores).

    The short way is taken only when the access logger's records would reach nothing but the
    JSON handler of :func:`configure` (the service as the CLI runs it); with any other logging
    set up (handlers, filters, disabled loggers, a test's capture) each line goes through
    ``logging`` as usual. Lines still waiting are written at exit and by :meth:`flush`."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._handler: logging.StreamHandler[Any] | None = None
        self._clock = _Clock()
        atexit.register(self.flush)

    def write(self, msg: str, fields: dict[str, Any]) -> None:
        """Log one request: ``msg`` the human line, ``fields`` the JSON fields."""
        logger = logging.getLogger(ACCESS_LOGGER)
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = _sole_json_handler(logger)
        if handler is None:
            logger.info(msg, extra={"fields": fields})
            return
        self._handler = handler
        self._lines.append(orjson.dumps(
            {"ts": self._clock.stamp(time.time()), "level": "info", "logger": ACCESS_LOGGER,
             "msg": msg, **fields}, default=str))
        if len(self._lines) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop in this thread: write it now
                self.flush()

    def flush(self) -> None:
        """Write every waiting line, under the handler's lock so that lines of other loggers
        on other threads never land inside them."""
        lines, self._lines = self._lines, []
        handler = self._handler
        if not lines or handler is None:
            return
        text = (b"\n".join(lines) + b"\n").decode()
        with handler.lock or contextlib.nullcontext():
            try:
                handler.stream.write(text)
                handler.flush()
            except (OSError, ValueError):  # stderr closed or gone: nowhere left to say so
                pass


def _sole_json_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The JSON handler of :func:`configure` when the access logger's records reach only it
    and nothing filters them on the way; else None."""
    if logger.handlers or logger.filters or logger.disabled or not logger.propagate:
        return None
    root = logging.getLogger()
    parent = logger.parent
    while parent is not None and parent is not root:
        if parent.handlers or parent.filters or parent.disabled or not parent.propagate:
            return None
        parent = parent.parent
    if len(root.handlers) != 1 or root.filters:
        return None
    handler = root.handlers[0]
    if not getattr(handler, "_anomaly_json", False) or handler.filters \
            or handler.level > logging.INFO or not isinstance(handler, logging.StreamHandler):
        return None
    return handler


#: The service's one access log writer (both ways in share it).
access = AccessLog()
