"""The scoring and training-speed benchmarks' quick modes run end to end and write what their
README sections quote (a few minutes on 2 CPU cores, hence ``slow``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A benchmark script as a user runs it; its output is shown if it fails."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=880, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scoring_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "scoring.json"
    proc = _run("scoring.py", "--quick", "--seconds", "0.05", "--threads", "1", "--out", str(out))
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
def test_scoring_device_mode_on_the_cpu_provider(tmp_path: Path) -> None:
    """The GPU measurement (``--device CUDAExecutionProvider``), its code path run on the CPU
    provider: numpy feeds and IO binding agree and are timed; an absent provider is an
    error that says so."""
    out = tmp_path / "device.json"
    proc = _run("scoring.py", "--device", "CPUExecutionProvider", "--quick", "--seconds",
                "0.05", "--out", str(out))
    cells = json.loads(out.read_text())["cells"]
    assert [(c["model"], c["B"], c["L"]) for c in cells] == [("mlp", 256, 10), ("mlp", 4096, 10)]
    assert all(c[k]["median"] > 0 for c in cells for k in ("run", "iobinding"))
    assert "| mlp | 4096 | 10 |" in proc.stdout
    missing = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scoring.py"),
                              "--device", "NoSuchExecutionProvider", "--quick", "--seconds",
                              "0.05", "--out", str(tmp_path / "x.json")],
                             capture_output=True, text=True, timeout=880, cwd=REPO)
    assert missing.returncode != 0 and "is not available here" in missing.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scorer_overhead_runs(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    proc = _run("scorer_overhead.py", "--calls", "200", "--rounds", "2", "--batches", "1",
                "--out", str(out))
    cells = json.loads(out.read_text())["cells"]
    assert [c["model"] for c in cells] == ["breast (D=30)", "table41 (D=91)",
                                           "mlp 784-400-200-20"]
    for c in cells:
        assert c["B"] == 1 and 0 < c["scorer_over_raw"] < 2
        assert all(v > 0 for v in c["median_us"].values())
    assert "rows_over_raw" in cells[0] and "rows_over_raw" not in cells[2]
    assert "| breast (D=30) | 1 | 16 |" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_speed_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "training.json"
    _run("training_speed.py", "--quick", "--threads", "1,product", "--out", str(out))
    rows = json.loads(out.read_text())["per_epoch"]
    assert [(r["table"], r["torch_threads"]) for r in rows] == [
        ("7k x 40", 1), ("7k x 40", "product"), ("3k x 10", 1), ("3k x 10", "product")]
    assert all(r["fit_rows_per_s"] > 0 and r["plain_rows_per_s"] > 0 for r in rows)


DATA = REPO.parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    or not (DATA / "odds" / "satellite.mat").is_file(),
    reason=f"MNIST and ODDS satellite not present under {DATA}")


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_data
def test_mc_noise_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "mc.json"
    _run("mc_noise.py", "--quick", "--seeds", "2", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert {(r["data"], r["method"], r["L"]) for r in rows} == {
        (d, m, L) for d in ("mnist", "satellite") for m in ("iid", "antithetic", "sobol")
        for L in (2, 4, 10)}
    assert all(0.5 < r["auroc"] <= 1 and r["se_spread"] > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_data
def test_int8_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "int8.json"
    _run("int8.py", "--quick", "--seconds", "0.2", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"] for r in rows] == ["mnist", "satellite"]
    assert all(r["speedup"] > 0 and abs(r["auroc_change"]) < 0.2 for r in rows)
