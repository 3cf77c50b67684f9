"""The ODDS tabular benchmark's quick mode runs end to end (glass and wbc, one seed, 20 epochs;
about a minute on 2 CPU cores, hence ``slow``); skipped when ../shared/data/odds is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

ODDS = SHARED_DATA / "odds"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not (ODDS / "glass.mat").is_file() or not (ODDS / "wbc.mat").is_file(),
                    reason=f"ODDS .mat files not present at {ODDS}")
def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "odds.py"), "--quick", "--data", str(ODDS),
         "--out", str(tmp_path), "--jobs", "2"],
        capture_output=True, text=True, timeout=580, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "odds.json").read_text())
    assert [(r["table"], r["seed"]) for r in result["runs"]] == [("glass", 0), ("wbc", 0)]
    detectors = {"ours", "IForest", "LOF", "KNN", "OCSVM", "PCA", "ECOD", "COPOD", "HBOS"}
    for run in result["runs"]:
        assert run["errors"] == {}, run["errors"]
        assert set(run["metrics"]) == detectors
        assert run["n_test_outliers"] == {"glass": 4, "wbc": 8}[run["table"]]
        for m in run["metrics"].values():
            assert 0.0 <= m["auroc"] <= 1.0 and 0.0 < m["auprc"] <= 1.0
        assert 0.0 <= run["ours"]["test_fpr"] <= 1.0
        assert run["ours"]["target_fpr"] == pytest.approx(0.01)
    summary = result["summary"]
    assert summary["tables"] == ["glass", "wbc"]
    assert set(summary["mean"]) == detectors
    assert all(1.0 <= v["rank"] <= 9.0 for v in summary["mean"].values())
    assert "| **mean** |" in (tmp_path / "odds.md").read_text()
    assert "mean rank" in proc.stdout and "| wbc |" in proc.stdout


def test_skips_cleanly_without_data(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "odds.py"), "--data", str(tmp_path / "none"),
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped" in proc.stdout
    assert not (tmp_path / "odds.json").exists()
