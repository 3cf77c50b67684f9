"""The access log's short way (service/logs.py AccessLog): the same JSON lines as the
logging path, written once per event-loop iteration, and the logging path whenever logging
is set up in any other way."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest

from service import logs

FIELDS = {"request_id": "r-1", "method": "POST", "path": "/v1/models/m/score", "query": "",
          "status": 200, "duration_ms": 1.25, "bytes_in": 10, "client": "127.0.0.1"}


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    """The root logger as ``logs.configure`` sets it up, writing to a string buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    for h in list(root.handlers):
        root.removeHandler(h)
    logs.configure("info")
    handler = root.handlers[0]
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


@contextlib.contextmanager
def served() -> Iterator[None]:
    """The root logger with only the JSON handler, as in the service (pytest adds its own
    capture handlers to the root logger around every test)."""
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers = [h for h in saved if getattr(h, "_anomaly_json", False)]
    try:
        yield
    finally:
        root.handlers = saved


def test_lines_match_the_formatter_and_wait_for_the_end_of_the_iteration(
        json_stream: io.StringIO) -> None:
    writer = logs.AccessLog()

    async def three_requests() -> tuple[str, str]:
        for i in range(3):
            writer.write(f"POST /x {200 + i}", {**FIELDS, "status": 200 + i})
        during = json_stream.getvalue()  # nothing yet: one write for the whole iteration
        await asyncio.sleep(0)
        return during, json_stream.getvalue()

    with served():
        during, after = asyncio.run(three_requests())
    assert during == ""
    lines = [json.loads(line) for line in after.splitlines()]
    assert [e["status"] for e in lines] == [200, 201, 202]
    # the same keys, in the same order, as a line through logging and JsonFormatter
    record = logging.LogRecord(logs.ACCESS_LOGGER, logging.INFO, __file__, 1, "POST /x 200",
                               None, None)
    record.fields = FIELDS
    via_logging = json.loads(logs.JsonFormatter().format(record))
    assert list(lines[0]) == list(via_logging)
    assert {k: v for k, v in lines[0].items() if k != "ts"} == \
        {k: v for k, v in via_logging.items() if k != "ts"}
    assert lines[0]["ts"].endswith("Z") and len(lines[0]["ts"]) == len(via_logging["ts"])


def test_without_an_event_loop_the_line_is_written_at_once(json_stream: io.StringIO) -> None:
    with served():
        logs.AccessLog().write("GET /healthz 200", FIELDS)
    assert json.loads(json_stream.getvalue())["msg"] == "GET /healthz 200"


def test_other_logging_setups_get_every_line_through_logging(
        json_stream: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    writer = logs.AccessLog()
    with caplog.at_level(logging.INFO, logger=logs.ACCESS_LOGGER):  # a second handler
        writer.write("POST /x 422", {**FIELDS, "status": 422})
    [record] = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    assert record.getMessage() == "POST /x 422" and record.fields["status"] == 422  # type: ignore[attr-defined]


def test_a_raised_level_silences_it(json_stream: io.StringIO) -> None:
    logging.getLogger(logs.ACCESS_LOGGER).setLevel(logging.WARNING)
    try:
        with served():
            logs.AccessLog().write("GET /healthz 200", FIELDS)
    finally:
        logging.getLogger(logs.ACCESS_LOGGER).setLevel(logging.NOTSET)
    assert json_stream.getvalue() == ""
