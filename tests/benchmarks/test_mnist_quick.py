"""The MNIST leave-one-digit-out benchmark's quick mode runs end to end (about 3-5 minutes on
2 CPU cores, hence ``slow``); skipped when ../shared/data/mnist is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

MNIST = SHARED_DATA / "mnist"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason=f"MNIST idx files not present at {MNIST}")
def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "mnist_leave_one_out.py"), "--quick",
         "--data", str(MNIST), "--out", str(tmp_path), "--jobs", "2"],
        capture_output=True, text=True, timeout=880, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "mnist_leave_one_out.json").read_text())
    assert [d["digit"] for d in result["digits"]] == [1, 9]
    methods = {"recprob", "recprob_plain", "elbo", "recerr", "pca", "ae", "ae_ref", "pyod",
               "pyod_kl"}
    for d in result["digits"]:
        assert set(d["metrics"]) == methods
        assert d["n_test_anomalies"] == {1: 1135, 9: 1009}[d["digit"]]
        for m in d["metrics"].values():
            assert 0.0 <= m["auroc"] <= 1.0 and 0.0 < m["auprc"] <= 1.0
        # The threshold was calibrated for FPR 0.05 on held-out normals; test normals agree.
        assert 0.0 < d["fpr_at_threshold"] < 0.15
    assert (tmp_path / "mnist_leave_one_out.png").read_bytes()[:4] == b"\x89PNG"
    assert "| **mean** |" in (tmp_path / "mnist_leave_one_out.md").read_text()
    assert "wall" in proc.stdout and "| 9 |" in proc.stdout
