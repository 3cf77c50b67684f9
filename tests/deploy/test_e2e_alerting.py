"""End to end on a real Prometheus: the service (a small tabular bundle) scraped every second
by the Debian `prometheus` binary with the real rules (group intervals and `for:` shortened
in a test copy, windows and thresholds unchanged). Normal traffic raises no alert; anomalous
traffic sends AnomalyRateHigh to firing, as seen through Prometheus' /api/v1/alerts. The
dashboard's queries are then run against the same Prometheus.

Everything listens on 127.0.0.1 free ports, is bounded in time, and is stopped at the end
(also on failure)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest

from tests.deploy.conftest import DEPLOY, PROM_DIR, RULES, load_yaml

MODEL = "e2e"
FPR = 0.01
N_COLS = 4
NORMAL_ROWS = 1500  # 15 expected false positives: over the rules' guard of 5
ANOMALOUS_ROWS = 600
BATCH = 100
#: `for:` of every rule in the test copy
SHORT_FOR = "2s"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def normal_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """Correlated Gaussian columns from a fixed 2-factor model."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(7).normal(size=(2, N_COLS))
    x = rng.normal(size=(n, 2)) @ mixing + 0.3 * rng.normal(size=(n, N_COLS))
    return {f"x{j}": x[:, j] for j in range(N_COLS)}


def as_rows(cols: dict[str, np.ndarray]) -> list[dict[str, float]]:
    names = list(cols)
    return [dict(zip(names, map(float, r), strict=True))
            for r in np.column_stack([cols[n] for n in names])]


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float,
             interval_s: float = 0.25) -> T:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.TransportError, KeyError, IndexError) as exc:
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def rules_test_copy(dest: Path) -> Path:
    """alerts.yml with 1 s group intervals and SHORT_FOR instead of every `for:`; the rule
    expressions (windows, factors, guards) are the production ones."""
    doc = load_yaml(RULES)
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = SHORT_FOR
    import yaml

    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def prometheus_config(dest: Path, rules: Path, target: str) -> Path:
    """deploy/prometheus/prometheus.yml scraping `target` every second, without the other
    jobs and without Alertmanager (the test reads alerts from Prometheus itself)."""
    import yaml

    cfg = load_yaml(PROM_DIR / "prometheus.yml")
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(rules)]
    cfg.pop("alerting")
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "vae-anomaly")
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [target]}]
    cfg["scrape_configs"] = [job]
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


@dataclass
class Stack:
    service: str  # base URL
    prometheus: str  # base URL
    tmp: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prometheus}/api/v1/alerts", timeout=10)
        r.raise_for_status()
        return r.json()["data"]["alerts"]

    def score(self, rows: list[dict[str, float]]) -> list[bool]:
        flags: list[bool] = []
        with httpx.Client(base_url=self.service, timeout=30) as client:
            for i in range(0, len(rows), BATCH):
                r = client.post(f"/v1/models/{MODEL}/score", json={"rows": rows[i:i + BATCH]})
                assert r.status_code == 200, r.text
                flags += [item["is_anomaly"] for item in r.json()["results"]]
        return flags


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not found: install the Debian package 'prometheus'")
    pytest.importorskip("torch", reason="training a bundle needs the 'train' extra")
    pytest.importorskip("service.main", reason="the service package is not importable")
    from training.config import TrainConfig
    from training.pipeline import train_tabular

    tmp = tmp_path_factory.mktemp("e2e-alerting")
    # A small, briefly trained model: the calibration makes its FPR right whatever its
    # quality, and rows 8 sd away are far out for any model.
    train_tabular(normal_rows(5000, seed=0), tmp / "models" / MODEL, MODEL,
                  TrainConfig(epochs=10, hidden=(32, 16), latent_dim=2, batch_size=256,
                              mc_samples=8, progress=False, target_fpr=FPR))

    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        sport, pport = free_port(), free_port()
        logs.append(tmp / "service.log")
        with logs[-1].open("wb") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "service", "--models", str(tmp / "models"),
                 "--host", "127.0.0.1", "--port", str(sport), "--no-access-log"],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        service = f"http://127.0.0.1:{sport}"
        wait_for("the service to be ready", lambda: httpx.get(
            f"{service}/v2/health/ready", timeout=2).status_code == 200, 60)

        rules = rules_test_copy(tmp / "alerts.yml")
        config = prometheus_config(tmp / "prometheus.yml", rules, f"127.0.0.1:{sport}")
        logs.append(tmp / "prometheus.log")
        with logs[-1].open("wb") as log:
            processes.append(subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT))
        stack = Stack(service, f"http://127.0.0.1:{pport}", tmp)
        wait_for("Prometheus to be ready", lambda: httpx.get(
            f"{stack.prometheus}/-/ready", timeout=2).status_code == 200, 30)
        wait_for("Prometheus to scrape the service", lambda: stack.scalar(
            'up{job="vae-anomaly"}') == 1.0, 30)
        yield stack
    except BaseException:
        for path in logs:
            if path.exists():
                tail = path.read_text(errors="replace")[-3000:]
                sys.stderr.write(f"--- {path.name} ---\n{tail}\n")
        raise
    finally:
        for process in reversed(processes):
            stop(process)


def firing(stack: Stack, name: str) -> list[dict[str, Any]]:
    return [a for a in stack.alerts() if a["labels"]["alertname"] == name
            and a["state"] == "firing"]


RATIO = {w: (f'sum by (model, version) (rate(anomaly_anomalies_total[{w}])) / '
             f'sum by (model, version) (rate(anomaly_samples_scored_total[{w}])) / '
             f'max by (model, version) (anomaly_target_fpr)') for w in ("10m", "30m")}
EXPECTED_FP = {w: (f'sum by (model, version) (increase(anomaly_samples_scored_total[{w}])) * '
                   f'max by (model, version) (anomaly_target_fpr)') for w in ("10m", "30m")}


def test_normal_then_anomalous_traffic(stack: Stack) -> None:
    rules = stack.query('anomaly_target_fpr')
    assert [(r["metric"]["model"], float(r["value"][1])) for r in rules] == [(MODEL, FPR)]

    # --- normal traffic: rows from the training distribution --------------------------------
    flags = stack.score(as_rows(normal_rows(NORMAL_ROWS, seed=1)))
    flagged = sum(flags)
    assert flagged < 3 * FPR * NORMAL_ROWS, f"{flagged} of {NORMAL_ROWS} normal rows flagged"
    wait_for("Prometheus to see the normal traffic", lambda: stack.scalar(
        "sum(anomaly_samples_scored_total)") == NORMAL_ROWS, 15)
    assert stack.scalar("sum(anomaly_anomalies_total)") == flagged
    # Let the rules evaluate on it for several cycles (1 s interval, 2 s `for:`).
    time.sleep(5)
    # The guard is met, so quiet means the ratio is low, not that the rule was not looking.
    for w in ("10m", "30m"):
        assert stack.scalar(EXPECTED_FP[w]) >= 5, w
        ratio = stack.scalar(RATIO[w])
        assert ratio is not None and ratio < 3, (w, ratio)
    assert stack.alerts() == [], "alerts under normal traffic"
    rule_health = [r for g in httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10)
                   .json()["data"]["groups"] for r in g["rules"]]
    assert rule_health and all(r["health"] == "ok" for r in rule_health), rule_health

    # --- anomalous traffic: the same columns 8 sd away --------------------------------------
    cols = normal_rows(ANOMALOUS_ROWS, seed=2)
    sd = {k: float(np.std(v)) for k, v in normal_rows(5000, seed=0).items()}
    shifted = {k: v + 8 * sd[k] for k, v in cols.items()}
    anomalous_flags = stack.score(as_rows(shifted))
    assert sum(anomalous_flags) > 0.9 * ANOMALOUS_ROWS

    def both_severities_firing() -> list[dict[str, Any]] | None:
        alerts = firing(stack, "AnomalyRateHigh")
        severities = {a["labels"]["severity"] for a in alerts}
        return alerts if severities == {"critical", "warning"} else None

    alerts = wait_for("AnomalyRateHigh (critical and warning) to fire",
                      both_severities_firing, 30)
    observed = (flagged + sum(anomalous_flags)) / (NORMAL_ROWS + ANOMALOUS_ROWS) / FPR
    for alert in alerts:
        assert alert["labels"]["model"] == MODEL and alert["labels"]["version"] == "1"
        assert math.isclose(float(alert["value"]), observed, rel_tol=0.05), \
            (alert["value"], observed)
        assert alert["annotations"]["runbook_url"].endswith("#anomalyratehigh")
        shown = re.search(r"flags (\d+\.\d)x its calibrated", alert["annotations"]["summary"])
        assert shown and math.isclose(float(shown.group(1)), observed, rel_tol=0.05), \
            alert["annotations"]["summary"]
    # The service itself stayed healthy: nothing else fires.
    others = {a["labels"]["alertname"] for a in stack.alerts()} - {
        "AnomalyRateHigh", "ScoreDistributionShift"}
    assert others == set(), others


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of the Grafana dashboard, with the dashboard's
    variables replaced by what they select here."""
    board = json.loads((DEPLOY / "grafana" / "vae-anomaly.json").read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "1m")
                    .replace("$model", ".+").replace("$version", ".+")
                    .replace("$instance", ".+").replace("$job", "vae-anomaly"))
            out.append((panel["title"], expr))
    return out


def test_dashboard_queries_return_data(stack: Stack) -> None:
    """Every dashboard query runs on the real Prometheus and returns series for the model
    (ordering after the traffic test: the module's stack has scored normal and anomalous
    rows by then; run alone, this test sends some traffic first)."""
    if stack.scalar("sum(anomaly_samples_scored_total)") in (None, 0.0):
        stack.score(as_rows(normal_rows(200, seed=3)))
        wait_for("a scrape", lambda: stack.scalar("sum(anomaly_samples_scored_total)"), 15)
    empty = []
    for title, expr in dashboard_queries():
        if not stack.query(expr):
            empty.append((title, expr))
    # Error and shedding rates are legitimately empty-free: they are ratios of series that
    # exist from the start (every outcome is pre-created at 0), so no query may be empty.
    assert empty == [], empty
