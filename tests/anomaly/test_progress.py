"""Progress bars redraw rarely when stderr is a log file, not once per update."""

from __future__ import annotations

import io
import sys
import time

import pytest
from tqdm.auto import tqdm

from anomaly.progress import bar_options


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_file_gets_few_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert bar_options()["mininterval"] == 10.0
    with tqdm(range(100), file=log, **bar_options()) as bar:
        for _ in bar:  # 0.5 s: a terminal's 0.1 s redraw interval would draw ~5 more times
            time.sleep(0.005)
            bar.set_postfix(refresh=False, loss="1.0")
    assert log.getvalue().count("\r") <= 3  # start and end, not one per update


def test_terminal_redraws_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    assert bar_options() == {"mininterval": 0.1, "dynamic_ncols": True}
