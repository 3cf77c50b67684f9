"""Structured logging: every line on stderr is one JSON object, so log shippers need no
parsing rules. Extra fields ride on ``extra={"fields": {...}}``."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS_LOGGER = "service.access"


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., **fields}``; a traceback, when
    there is one, goes in ``exc`` (the log is for operators, never for HTTP clients)."""

    _second: int = -1  # the second self._stamp spells
    _stamp: str = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once per second, not once per line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
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
