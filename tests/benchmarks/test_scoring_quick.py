"""The scoring and training-speed benchmarks' quick modes run end to end and write what their
README sections quote (a few minutes on 2 CPU cores, hence ``slow``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scoring_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "scoring.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "scoring.py"), "--quick", "--seconds",
         "0.05", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=880, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["peak_gflops"] > 0 and result["cpu"]
    cells = result["cells"]
    assert {(c["B"], c["L"]) for c in cells} == {(1, 10), (32, 10), (32, 1)}
    for c in cells:
        for contender in ("lean", "bundle", "plain", "scorer"):
            assert c[contender]["best"] >= c[contender]["median"] > 0
        assert c["bundle_gflops"] > 0
    assert "| mlp | 32 | 10 |" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_speed_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "training.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "training_speed.py"), "--quick",
         "--threads", "1,product", "--out", str(out)],
        capture_output=True, text=True, timeout=880, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())["per_epoch"]
    assert [(r["table"], r["torch_threads"]) for r in rows] == [
        ("7k x 40", 1), ("7k x 40", "product"), ("3k x 10", 1), ("3k x 10", "product")]
    assert all(r["fit_rows_per_s"] > 0 and r["plain_rows_per_s"] > 0 for r in rows)
