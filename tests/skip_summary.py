"""The last line of a test run: how many tests skipped because a tool is missing (the system
tools that ``.ci/tools.sh`` installs, or an extra's executables) and how many because data
is genuinely absent (``../shared``), so a run that quietly skipped the alerting tests cannot
pass for a full one. Called from ``tests/conftest.py``'s ``pytest_unconfigure``, which runs
after pytest's own summary line."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import pytest

#: "promtool not found: ...": the skip message of every test that needs an executable.
TOOL = re.compile(r"\b([\w.+-]+) not found\b")
#: the data sets that live outside the repository (../shared/data), and say so when absent
DATA = re.compile(r"not present at|\.\./shared|/shared/data")


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The text of a skip: ``longrepr`` is (path, line, "Skipped: reason") for skips."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def summary_line(reasons: Iterable[str]) -> str:
    """'0 tool-related skips; 2 skipped for absent data: ...', plus any other skips."""
    tools: Counter[str] = Counter()
    data: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for reason in reasons:
        tool = TOOL.search(reason)
        if tool:
            tools[tool.group(1)] += 1
        elif DATA.search(reason):
            data[reason] += 1
        else:
            other[reason] += 1
    n_tools = sum(tools.values())
    line = f"{n_tools} tool-related skips"
    if n_tools:
        line += (f" ({', '.join(sorted(tools))} not found: run .ci/tools.sh as root, or the "
                 "apt-get command it prints)")
    line += f"; {sum(data.values())} skipped for absent data"
    if data:
        line += ": " + ", ".join(f"{r} ({n})" for r, n in sorted(data.items()))
    if other:
        line += f"; {sum(other.values())} other: " + ", ".join(
            f"{r} ({n})" for r, n in sorted(other.items()))
    return line


def report_skips(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not hasattr(reporter, "stats") or config.option.collectonly:
        return
    skipped = [r for r in reporter.stats.get("skipped", [])
               if isinstance(r, pytest.TestReport | pytest.CollectReport)]
    if not any(reporter.stats.get(k) for k in ("passed", "failed", "skipped", "error")):
        return
    reporter.write_line(summary_line(skip_reason(r) for r in skipped))
