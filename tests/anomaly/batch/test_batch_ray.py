"""The Ray engine on a local Ray with 2 CPUs gives the local engine's output, byte for byte."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from anomaly.batch import ScoreOptions, score_path
from anomaly.errors import AnomalyError, InputError
from tests.anomaly.batch.test_batch_tables import BAD_BYTES
from tests.conftest import make_tabular


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_tables_match_the_local_engine(local_ray: None, sensors_bundle: Path,
                                       tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a_bad.csv").write_bytes(BAD_BYTES)
    cols = make_tabular(2500, seed=8, anomalies=40)
    cols["id"] = [f"b{i}" for i in range(2500)]  # type: ignore[assignment]
    pq.write_table(pa.table(cols), data / "b.parquet", row_group_size=700)
    pacsv.write_csv(pa.table(make_tabular(900, seed=9) | {"id": [f"c{i}" for i in range(900)]}),
                    data / "c.csv")
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / f"{engine}.parquet"
        summary = score_path(sensors_bundle, str(data / "*"), outs[engine], ScoreOptions(
            engine=engine, explain=2, id_column="id", chunk_rows=300, progress=False))
        assert summary.engine == engine
        assert (summary.scored, summary.rejected) == (2500 + 900 + 5, 7)
    assert outs["ray"].read_bytes() == outs["local"].read_bytes()
    assert (tmp_path / "ray.rejects.csv").read_bytes() == \
        (tmp_path / "local.rejects.csv").read_bytes()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_images_match_the_local_engine(local_ray: None, digits_model: Path, image_folder: Path,
                                       tmp_path: Path) -> None:
    for engine in ("local", "ray"):
        heat = tmp_path / "heat" if engine == "ray" else None  # written by the actors
        summary = score_path(digits_model, image_folder, tmp_path / f"{engine}.parquet",
                             ScoreOptions(engine=engine, chunk_rows=7, progress=False,
                                          heatmaps=heat))
        assert (summary.scored, summary.rejected) == (30, 2)
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    assert len(list((tmp_path / "heat").rglob("*.png"))) == 30


def test_fail_on_bad_and_resume_on_ray(local_ray: None, sensors_bundle: Path,
                                       tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(BAD_BYTES)
    with pytest.raises(InputError, match=r"^row 1 of .*'oops' is not a number; stopped by "):
        score_path(sensors_bundle, src, tmp_path / "out.csv",
                   ScoreOptions(engine="ray", fail_on_bad=True, progress=False))
    with pytest.raises(InputError, match="--resume works with the local engine"):
        score_path(sensors_bundle, src, tmp_path / "out.csv",
                   ScoreOptions(engine="ray", resume=True, progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_missing_ray_is_a_clear_error(sensors_bundle: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    src = tmp_path / "a.csv"
    pacsv.write_csv(pa.table(make_tabular(10, seed=1)), src)
    with pytest.raises(AnomalyError, match=r"pip install 'vae-anomaly\[ray\]'"):
        score_path(sensors_bundle, src, tmp_path / "out.csv",
                   ScoreOptions(engine="ray", progress=False))
