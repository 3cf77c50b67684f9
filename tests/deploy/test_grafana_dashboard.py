"""The Grafana dashboard (deploy/grafana/vae-anomaly.json): well-formed, has the panels the
on-call needs, and every query is valid PromQL (checked by promtool) over metrics of
docs/metrics.md. (test_e2e_alerting runs every query against a real Prometheus.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, load_yaml, tool, unknown_metrics

BOARD = DEPLOY / "grafana" / "vae-anomaly.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"


def board() -> dict[str, Any]:
    return json.loads(BOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in board()["panels"] if p["type"] != "row"]


def exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p.get("targets", [])]


def substituted(expr: str) -> str:
    """What Grafana sends for the dashboard's variables."""
    return (expr.replace("$__rate_interval", "1m").replace("$model", ".+")
            .replace("$job", "vae-anomaly"))


def test_dashboard_is_well_formed() -> None:
    b = board()
    assert b["uid"] == "vae-anomaly"
    ids = [p["id"] for p in b["panels"]]
    assert len(ids) == len(set(ids))
    for p in b["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
    variables = {v["name"] for v in b["templating"]["list"]}
    assert {"datasource", "job", "model"} <= variables
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p.get("targets"), p["title"]
        assert p.get("description"), p["title"]


@pytest.mark.parametrize(("what", "needles"), [
    ("requests/s", ["rate(anomaly_requests_total"]),
    ("latency p50 and p99", ["histogram_quantile(0.5, sum by (model, le) (rate("
                             "anomaly_request_duration_seconds_bucket",
                             "histogram_quantile(0.99, sum by (model, le) (rate("
                             "anomaly_request_duration_seconds_bucket"]),
    ("anomaly rate beside the expected FPR", ["rate(anomaly_anomalies_total",
                                              "anomaly_target_fpr"]),
    ("score distribution", ["anomaly_score_bucket"]),
    ("p-value distribution", ["anomaly_p_value_bucket"]),
    ("batch size", ["anomaly_batch_size_bucket"]),
    ("queue depth", ["anomaly_queue_depth"]),
])
def test_dashboard_shows(what: str, needles: list[str]) -> None:
    for needle in needles:
        assert any(needle in e for _, e in exprs()), f"no panel for {what}: {needle}"


def test_anomaly_rate_panel_plots_the_fpr_beside_the_rate() -> None:
    panel = next(p for p in panels() if p["title"] == "Anomaly rate vs expected FPR")
    texts = [t["expr"] for t in panel["targets"]]
    assert any("anomaly_anomalies_total" in t for t in texts)
    assert any("anomaly_target_fpr" in t and "anomaly_anomalies_total" not in t for t in texts)


def test_dashboard_queries_use_contract_metrics() -> None:
    for title, expr in exprs():
        assert not unknown_metrics(expr), (title, expr)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substituted(expr)}
        for i, (_, expr) in enumerate(exprs())]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    ds = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert [d["type"] for d in ds] == ["prometheus"]
    provider = load_yaml(PROVISIONING / "dashboards" / "vae-anomaly.yml")["providers"][0]
    compose = load_yaml(DEPLOY / "docker" / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.startswith("../grafana/vae-anomaly.json:" + provider["options"]["path"])
               for m in mounts), mounts
