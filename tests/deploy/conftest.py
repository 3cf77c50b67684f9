"""Shared paths and tool lookups of the deployment tests."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROM_DIR = DEPLOY / "prometheus"
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = PROM_DIR / "alerts.test.yml"
METRICS_DOC = REPO / "docs" / "metrics.md"

#: suffixes Prometheus adds to a histogram's name
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def tool(name: str, package: str) -> str:
    """Path of an executable, or skip the test saying what to install."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: install the Debian package '{package}'")
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def contract_metrics() -> dict[str, str]:
    """{metric name: type} from the table of docs/metrics.md."""
    out = {}
    for line in METRICS_DOC.read_text().splitlines():
        m = re.match(r"\|\s*`(anomaly_[a-z0-9_]+)`\s*\|\s*([a-z]+)", line)
        if m:
            out[m.group(1)] = m.group(2)
    assert out, "no metric table found in docs/metrics.md"
    return out


def unknown_metrics(expr: str) -> set[str]:
    """anomaly_* names in a PromQL expression that docs/metrics.md does not define
    (histogram series are accepted with their _bucket/_count/_sum suffixes)."""
    known = contract_metrics()
    names = set()
    for name in known:
        names.add(name)
        if known[name] == "histogram":
            names.update(name + s for s in HISTOGRAM_SUFFIXES)
    return {n for n in re.findall(r"\banomaly_[a-z0-9_]+\b", expr) if n not in names}
