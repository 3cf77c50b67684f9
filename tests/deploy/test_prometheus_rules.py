"""The alert rules (deploy/prometheus/alerts.yml): promtool validates them and runs their unit
tests; the unit tests are shown to catch broken rules; every alert has a severity, a runbook
anchor that exists, and only uses metrics of docs/metrics.md; the Prometheus and Alertmanager
configurations validate and route by severity."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    PROM_DIR,
    RULE_TESTS,
    RULES,
    load_yaml,
    tool,
    unknown_metrics,
)

RUNBOOKS = PROM_DIR / "runbooks.md"
ALERTMANAGER = PROM_DIR / "alertmanager.yml"
#: labels a rule sets itself (the rest come from the series)
SEVERITIES = {"critical", "warning"}


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd,
                          check=False)


def alert_rules() -> list[dict]:
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    promtool = tool("promtool", "prometheus")
    res = run(promtool, "check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in res.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = tool("promtool", "prometheus")
    res = run(promtool, "test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


# Each mutation (every occurrence replaced) breaks one property of a rule; the unit tests
# must notice every one.
MUTATIONS = {
    "anomaly rate: warning factor 3 -> 5": (
        ") > 3\n", ") > 5\n"),
    "anomaly rate: fixed rate instead of a ratio to the FPR": (
        "/ sum by (model, version) (rate(anomaly_samples_scored_total[30m]))\n"
        "            / max by (model, version) (anomaly_target_fpr)",
        "/ sum by (model, version) (rate(anomaly_samples_scored_total[30m]))\n"
        "            / 0.01"),
    "anomaly rate: no low-traffic guard": (
        "          ) > 3\n          and on (model, version)\n          (\n"
        "              sum by (model, version) (increase(anomaly_samples_scored_total[30m]))\n"
        "            * max by (model, version) (anomaly_target_fpr)\n          ) >= 5\n",
        "          ) > 3\n"),
    "anomaly rate: critical held 15m instead of 5m": (
        "        for: 5m\n        labels:\n          severity: critical\n        annotations:\n"
        "          summary: \"{{ $labels.model }} v{{ $labels.version }} flags",
        "        for: 15m\n        labels:\n          severity: critical\n        annotations:\n"
        "          summary: \"{{ $labels.model }} v{{ $labels.version }} flags"),
    "anomaly rate: critical window 10m -> 30m": (
        "(rate(anomaly_anomalies_total[10m]))\n"
        "            / sum by (model, version) (rate(anomaly_samples_scored_total[10m]))",
        "(rate(anomaly_anomalies_total[30m]))\n"
        "            / sum by (model, version) (rate(anomaly_samples_scored_total[30m]))"),
    "anomaly rate: per-instance instead of summed over replicas": (
        "sum by (model, version) (rate(anomaly_anomalies_total[30m]))",
        "max by (model, version) (rate(anomaly_anomalies_total[30m]))"),
    "distribution shift: tail limit 0.10 -> 0.2": (") > 0.10\n", ") > 0.2\n"),
    "distribution shift: no upper median limit": (
        "            or\n            (\n"
        "                sum by (model, version) (rate(anomaly_p_value_bucket{le=\"0.5\"}[1h]))\n"
        "              / sum by (model, version) (rate(anomaly_p_value_count[1h]))\n"
        "            ) > 0.65\n",
        ""),
    "distribution shift: no low-traffic guard": (
        "sum by (model, version) (increase(anomaly_p_value_count[1h])) >= 500",
        "sum by (model, version) (increase(anomaly_p_value_count[1h])) >= 0"),
    "latency: p90 instead of p99": (
        "histogram_quantile(0.99,\n"
        "            sum by (model, le) (rate(anomaly_request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.9,\n"
        "            sum by (model, le) (rate(anomaly_request_duration_seconds_bucket[5m])))"),
    "latency: no low-traffic guard": (
        "sum by (model) (rate(anomaly_request_duration_seconds_count[5m])) > 0.2",
        "sum by (model) (rate(anomaly_request_duration_seconds_count[5m])) >= 0"),
    "errors: client errors counted as server errors": (
        'outcome="server_error"', 'outcome=~"server_error|client_error"'),
    "errors: unauthorized not counted as a client error": (
        'outcome=~"client_error|unauthorized"', 'outcome="client_error"'),
    "shedding: no minimum count": (
        'sum by (model) (increase(anomaly_requests_total{outcome="rejected"}[5m])) >= 10',
        'sum by (model) (increase(anomaly_requests_total{outcome="rejected"}[5m])) >= 0'),
    "queue backlog: threshold 50 ms -> 500 ms": ("            > 0.05\n", "            > 0.5\n"),
    "model not ready: no 'for'": (
        "expr: anomaly_model_ready == 0\n        for: 5m\n",
        "expr: anomaly_model_ready == 0\n"),
    "load failures: a model's first failure missed": (
        "          or\n          (\n            anomaly_model_load_failures_total > 0\n"
        "            unless anomaly_model_load_failures_total offset 15m\n          )\n", ""),
    "load failures: a new model's counter at 0 taken for a failure": (
        "anomaly_model_load_failures_total > 0\n", "anomaly_model_load_failures_total\n"),
    "service down: any job": ('up{job="vae-anomaly"} == 0', "up == 0"),
    "service down: nothing discovered goes unnoticed": (
        'absent(up{job="vae-anomaly"} == 1)', 'up{job="vae-anomaly"} == 1 and up == 2'),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_rule_unit_tests_catch_a_broken_rule(name: str, tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    old, new = MUTATIONS[name]
    text = RULES.read_text()
    assert old in text, f"mutation {name!r} no longer matches alerts.yml"
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / "alerts.test.yml")
    assert run(promtool, "check", "rules", str(tmp_path / "alerts.yml")).returncode == 0, \
        f"mutation {name!r} made the rules invalid instead of wrong"
    res = run(promtool, "test", "rules", str(tmp_path / "alerts.test.yml"))
    assert res.returncode != 0, f"the unit tests did not notice: {name}"


def test_every_rule_is_shown_firing_by_a_unit_test() -> None:
    """Each rule (alert name plus its own labels) matches a firing expectation."""
    expected = [(case["alertname"], exp.get("exp_labels", {}))
                for test in load_yaml(RULE_TESTS)["tests"]
                for case in test.get("alert_rule_test", [])
                for exp in case.get("exp_alerts") or []]
    quiet = {case["alertname"] for test in load_yaml(RULE_TESTS)["tests"]
             for case in test.get("alert_rule_test", []) if not case.get("exp_alerts")}
    for rule in alert_rules():
        own = {k: str(v) for k, v in rule["labels"].items()}
        assert any(name == rule["alert"] and own.items() <= {k: str(v) for k, v in
                                                            labels.items()}.items()
                   for name, labels in expected), f"no unit test fires {rule['alert']} {own}"
        assert rule["alert"] in quiet, f"no unit test shows {rule['alert']} quiet"


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOKS.read_text().splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    anchors = runbook_anchors()
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        ann = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= ann.keys(), name
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == "deploy/prometheus/runbooks.md", name
        assert anchor == name.lower() and anchor in anchors, \
            f"{name}: runbooks.md has no section #{anchor}"


def test_rules_use_only_contract_metrics() -> None:
    for group in load_yaml(RULES)["groups"]:
        for rule in group["rules"]:
            assert not unknown_metrics(rule["expr"]), (rule.get("alert"), rule["expr"])


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    promtool = tool("promtool", "prometheus")
    res = run(promtool, "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in res.stdout
    jobs = {j["job_name"] for j in load_yaml(PROM_DIR / "prometheus.yml")["scrape_configs"]}
    assert "vae-anomaly" in jobs  # ServiceDown selects up{job="vae-anomaly"}


def test_alertmanager_config_is_valid() -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    res = run(amtool, "check-config", str(ALERTMANAGER))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (("alertname=AnomalyRateHigh", "severity=critical", "model=m"), "pager"),
    (("alertname=ServiceDown", "severity=critical"), "pager"),
    (("alertname=AnomalyRateHigh", "severity=warning", "model=m"), "tickets"),
    (("alertname=ScoreDistributionShift", "severity=warning", "signal=tail"), "tickets"),
])
def test_alertmanager_routes_by_severity(labels: tuple[str, ...], receiver: str) -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    res = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [receiver]


def test_every_severity_of_the_rules_has_a_route() -> None:
    routes = load_yaml(ALERTMANAGER)["route"]["routes"]
    routed = {m.split("=", 1)[1].strip('"') for r in routes for m in r["matchers"]
              if m.startswith("severity=")}
    assert {r["labels"]["severity"] for r in alert_rules()} <= routed
