"""The load benchmark's quick mode runs end to end and writes its JSON (slow: it trains a
bundle and starts four servers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import TrainedBundles, make_repo

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "service_load.py"


@pytest.mark.slow
def test_service_load_quick(bundles: TrainedBundles, tmp_path: Path) -> None:
    repo = make_repo(bundles, tmp_path / "models")
    out = tmp_path / "service_load.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--models", str(repo), "--clients", "8",
                          "--seconds", "0.5", "--rounds", "2", "--rows-per-request", "32",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["http"]]
    assert names[:4] == ["bare FastAPI endpoint", "bare endpoint, one write/response",
                         "service, batching on", "service, batching off"]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in report["http"])
    assert report["offline"]["score_rows_samples_per_s"] > 0
    assert all(len(rounds) == 2 for rounds in report["http_rounds"].values())
    assert "batching on vs bare" in run.stdout
    assert report["summary"]["single_sample_rps_vs_bare_one_write"] > 0
