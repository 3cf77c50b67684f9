"""Interrupted runs: ``kill -9`` mid-run, then ``--resume`` gives the uninterrupted bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from anomaly.batch import ScoreOptions, score_path
from anomaly.errors import InputError
from tests.anomaly.batch.conftest import REPO, run_cli
from tests.conftest import make_tabular

ROWS, CHUNK = 40_000, 500


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "new.csv"
    cols = make_tabular(ROWS, seed=21, anomalies=300)
    cols["id"] = [f"s{i:06d}" for i in range(ROWS)]  # type: ignore[assignment]
    pacsv.write_csv(pa.table(cols), path)
    return path


def score_args(bundle: Path, src: Path, out: Path, *extra: str) -> list[str]:
    return ["score", str(bundle), str(src), "--out", str(out), "--chunk-rows", str(CHUNK),
            "--explain", "2", "--id-column", "id", "--seed", "3", "--quiet", *extra]


def test_kill_9_then_resume_is_byte_identical(sensors_bundle: Path, big_csv: Path,
                                              tmp_path: Path) -> None:
    reference = tmp_path / "reference.parquet"
    run_cli(*score_args(sensors_bundle, big_csv, reference))

    out = tmp_path / "scores.parquet"
    partial = tmp_path / ".scores.parquet.partial"
    proc = subprocess.Popen([sys.executable, "-m", "anomaly",
                             *score_args(sensors_bundle, big_csv, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while len(list(partial.glob("chunk-*.arrow"))) < 3:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup handlers run: a real crash
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = len(list(partial.glob("chunk-*.arrow")))
    assert 3 <= done < ROWS // CHUNK
    assert not out.exists(), "a killed run must not leave an output"

    # a resume that asks for something else is refused, and leaves the partial run alone
    changed = score_args(sensors_bundle, big_csv, out, "--resume")
    changed[changed.index("--seed") + 1] = "4"
    proc2 = run_cli(*changed, ok=False)
    assert proc2.returncode == 2 and "different seed" in proc2.stderr, proc2.stderr
    assert len(list(partial.glob("chunk-*.arrow"))) == done

    resumed = run_cli(*score_args(sensors_bundle, big_csv, out, "--resume"))
    assert f"resumed: {done * CHUNK} of them were done" in resumed.stdout
    assert f"scored {ROWS} samples" in resumed.stdout
    assert out.read_bytes() == reference.read_bytes()
    assert not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.parquet",
                                                          "scores.parquet"]


def test_interrupted_run_without_resume_starts_over(sensors_bundle: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "new.csv"
    pacsv.write_csv(pa.table(make_tabular(3000, seed=5)), src)
    out = tmp_path / "s.csv"
    options = ScoreOptions(chunk_rows=500, progress=False)

    class Interrupt(Exception):
        pass

    import anomaly.batch.checkpoint

    real_commit = anomaly.batch.checkpoint.PartialRun.commit

    def commit_then_fail(self: anomaly.batch.checkpoint.PartialRun, index: int,
                         table: pa.Table) -> None:
        real_commit(self, index, table)
        if index == 2:
            raise Interrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(anomaly.batch.checkpoint.PartialRun, "commit", commit_then_fail)
        with pytest.raises(Interrupt):
            score_path(sensors_bundle, src, out, options)
    assert "--resume to continue" in caplog.text
    assert len(list((tmp_path / ".s.csv.partial").glob("chunk-*"))) == 3
    assert not out.exists()
    (tmp_path / ".s.csv.k1ll3d.tmp").write_text("half an output from a killed run")
    (tmp_path / ".s.rejects.csv.k1ll3d.tmp").write_text("half a rejects file")
    summary = score_path(sensors_bundle, src, out, options)  # no --resume: from scratch
    assert "discarding an earlier unfinished run" in caplog.text
    assert summary.resumed_rows == 0 and summary.scored == 3000
    again = tmp_path / "again.csv"
    score_path(sensors_bundle, src, again, ScoreOptions(chunk_rows=500, progress=False,
                                                        resume=True))  # nothing to resume
    assert again.read_bytes() == out.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.csv", "new.csv", "s.csv"]


def test_changed_input_is_not_resumed(sensors_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "new.csv"
    pacsv.write_csv(pa.table(make_tabular(1000, seed=5)), src)
    out = tmp_path / "s.csv"
    partial = tmp_path / ".s.csv.partial"
    import anomaly.batch.checkpoint
    from anomaly.batch.plan import make_plan
    from anomaly.inference import Scorer

    scorer = Scorer(sensors_bundle)
    options = ScoreOptions(chunk_rows=100)
    job = make_plan(scorer, src, options).job(scorer, options)
    run = anomaly.batch.checkpoint.PartialRun(out, job, resume=False)
    run.close()
    assert (partial / "job.json").is_file()
    pacsv.write_csv(pa.table(make_tabular(1001, seed=5)), src)  # the input changed
    with pytest.raises(InputError, match="different inputs"):
        score_path(sensors_bundle, src, out, ScoreOptions(chunk_rows=100, resume=True,
                                                          progress=False))
