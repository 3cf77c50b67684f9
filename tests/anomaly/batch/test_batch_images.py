"""Batch scoring of an image folder: recursive, mixed formats, rejects, heat maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from anomaly.batch import ScoreOptions, score_path
from anomaly.errors import InputError
from anomaly.inference import Scorer
from tests.anomaly.batch.conftest import run_cli


def test_image_folder_scores_rejects_and_heatmaps(digits_model: Path, image_folder: Path,
                                                  tmp_path: Path) -> None:
    heat = tmp_path / "heat"
    summary = score_path(digits_model, image_folder, tmp_path / "scores.parquet",
                         ScoreOptions(heatmaps=heat, chunk_rows=8, progress=False))
    out = pq.read_table(tmp_path / "scores.parquet")
    assert out.column_names == ["path", "score", "p_value", "is_anomaly"]
    good = sorted(p.relative_to(image_folder).as_posix() for p in image_folder.rglob("digit*"))
    assert out.column("path").to_pylist() == good and len(good) == 30
    rejects = pacsv.read_csv(tmp_path / "scores.rejects.csv").to_pylist()
    assert [r["path"] for r in rejects] == ["a/empty.jpg", "b/broken.png"]
    assert "is empty" in rejects[0]["reason"]
    assert "could not be decoded as an image" in rejects[1]["reason"]
    assert summary.scored == 30 and summary.rejected == 2
    # each chunk of 8 (in sorted order, rejects included) scores as the scorer scores it
    scorer = Scorer(digits_model)
    everything = sorted(p.relative_to(image_folder).as_posix() for p in image_folder.rglob("*")
                        if p.is_file() and p.suffix != ".txt")
    expected = []
    for start in range(0, len(everything), 8):
        names = [n for n in everything[start : start + 8] if n.split("/")[-1][:5] == "digit"]
        expected.append(scorer.score_images([(image_folder / n).read_bytes() for n in names]
                                            ).scores)
    np.testing.assert_array_equal(out.column("score").to_numpy(), np.concatenate(expected))
    pngs = sorted(p.relative_to(heat).as_posix() for p in heat.rglob("*.png"))
    assert pngs == sorted(str(Path(n).with_suffix(".png")) for n in good)
    with Image.open(heat / pngs[0]) as img:
        assert img.size[0] > 100  # a figure, not an 8x8 thumbnail
    assert not list(heat.rglob("*.tmp"))
    assert "heat maps in" in summary.describe()


def test_image_cli_fail_on_bad_and_wrong_kinds(digits_model: Path, sensors_bundle: Path,
                                               image_folder: Path, tmp_path: Path) -> None:
    proc = run_cli("score", digits_model, image_folder, "--out", tmp_path / "s.csv",
                   "--fail-on-bad", "--quiet", ok=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: a/empty.jpg: a/empty.jpg is empty")
    assert "stopped by --fail-on-bad" in proc.stderr
    assert not list(tmp_path.iterdir())
    proc = run_cli("score", sensors_bundle, image_folder, "--out", tmp_path / "s.csv",
                   "--quiet", ok=False)
    assert proc.returncode == 2 and "scores table rows" in proc.stderr
    proc = run_cli("score", digits_model, image_folder, "--out", tmp_path / "s.csv",
                   "--explain", "3", "--quiet", ok=False)
    assert proc.returncode == 2 and "--explain ranks table columns" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        score_path(digits_model, empty, tmp_path / "x.csv")
