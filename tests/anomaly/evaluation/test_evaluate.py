"""Evaluation runs on the batch engine: bad rows and unreadable images are left out and
reported instead of aborting, and the metrics are those of the rows that were scored."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from PIL import Image

from anomaly.calibration import auroc
from anomaly.errors import InputError
from anomaly.evaluation import evaluate_path
from anomaly.inference import Scorer
from tests.conftest import make_tabular


def _labelled_csv(path: Path, n: int = 300) -> dict[str, np.ndarray]:
    cols = make_tabular(n, seed=4, anomalies=30)
    pacsv.write_csv(pa.table(cols), path)
    return cols


def test_table_metrics_equal_the_scorers(tabular_bundle: Path, tmp_path: Path) -> None:
    cols = _labelled_csv(tmp_path / "t.csv")
    report = evaluate_path(tabular_bundle, tmp_path / "t.csv", "is_anomaly", tmp_path / "ev",
                           progress=False)
    scores = Scorer(tabular_bundle).score_rows(cols).scores
    assert report.auroc == pytest.approx(auroc(scores, cols["is_anomaly"]), abs=1e-12)
    assert (report.n_normal, report.n_anomalous, report.rejected) == (270, 30, 0)
    written = pacsv.read_csv(tmp_path / "ev" / "scores.csv")
    assert written.column_names[:3] == ["row", "label", "score"]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["rejected"] == 0


def test_bad_rows_are_left_out_and_reported(tabular_bundle: Path, tmp_path: Path) -> None:
    _labelled_csv(tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[1], "oops", 1)  # data row 4: not a number
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    report = evaluate_path(tabular_bundle, tmp_path / "t.csv", "is_anomaly", tmp_path / "ev",
                           progress=False)
    assert report.rejected == 1 and report.n_normal + report.n_anomalous == 299
    assert "left out 1 rows/images" in report.describe()
    rejects = pacsv.read_csv(tmp_path / "ev" / "scores.rejects.csv").to_pylist()
    assert rejects[0]["row"] == 4 and "not a number" in rejects[0]["reason"]


def test_label_errors_are_clear(tabular_bundle: Path, tmp_path: Path) -> None:
    cols = make_tabular(50, seed=1, anomalies=5)
    cols["is_anomaly"] = np.where(cols["is_anomaly"] == 1, "yes", "no")
    pacsv.write_csv(pa.table(cols), tmp_path / "t.csv")
    with pytest.raises(InputError, match=r"must hold 0 .* row 0 has 'no': name the normal "
                                         r"value with --normal-label"):
        evaluate_path(tabular_bundle, tmp_path / "t.csv", "is_anomaly", tmp_path / "ev",
                      progress=False)
    with pytest.raises(InputError, match="--label-column 'nope' is not a column"):
        evaluate_path(tabular_bundle, tmp_path / "t.csv", "nope", tmp_path / "ev",
                      progress=False)
    with pytest.raises(InputError, match="need --label-column"):
        evaluate_path(tabular_bundle, tmp_path / "t.csv", None, tmp_path / "ev",
                      progress=False)


def test_image_folder_with_a_broken_file(digits_bundle: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for sub, digit in (("normal", 3), ("anomalous", 7)):
        (tmp_path / "imgs" / sub).mkdir(parents=True)
        for i in np.flatnonzero(digits.target == digit)[:15]:
            buf = io.BytesIO()
            Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8)).save(
                buf, format="PNG")
            (tmp_path / "imgs" / sub / f"{i}.png").write_bytes(buf.getvalue())
    (tmp_path / "imgs" / "anomalous" / "broken.png").write_bytes(b"nope")
    report = evaluate_path(digits_bundle, tmp_path / "imgs", out_dir=tmp_path / "ev",
                           progress=False)
    assert (report.n_normal, report.n_anomalous, report.rejected) == (15, 15, 1)
    assert report.auroc > 0.8


@pytest.mark.parametrize(("normal", "anomalous", "flag"), [
    ("normal", "anomaly", ()), ("Inlier", "OUTLIER", ()), ("2", "4", ("2",)),
    ("normal.", "smurf.", ("normal.",)), ("no", "yes", ("no",)),
])
def test_labels_in_other_codings_give_the_same_metrics(
        tabular_bundle: Path, tmp_path: Path, normal: str, anomalous: str,
        flag: tuple[str, ...]) -> None:
    """Words, and any coding once its normal value is named (every other value, such as the
    many attack names of KDD Cup, is an anomaly), read as the 0/1 column does."""
    cols = _labelled_csv(tmp_path / "t.csv")
    reference = evaluate_path(tabular_bundle, tmp_path / "t.csv", "is_anomaly",
                              tmp_path / "ev0", progress=False)
    coded = dict(cols, is_anomaly=np.where(cols["is_anomaly"] == 1, anomalous, normal))
    pacsv.write_csv(pa.table(coded), tmp_path / "c.csv")
    report = evaluate_path(tabular_bundle, tmp_path / "c.csv", "is_anomaly", tmp_path / "ev",
                           progress=False, normal_labels=flag)
    assert (report.n_normal, report.n_anomalous) == (270, 30)
    assert report.auroc == reference.auroc and report.auprc == reference.auprc
    written = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert written["normal_labels"] == (list(flag) or None)


def test_a_row_without_a_label_is_named(tabular_bundle: Path, tmp_path: Path) -> None:
    cols = make_tabular(50, seed=1, anomalies=5)
    labels = cols["is_anomaly"].astype(str).astype(object)
    labels[7] = None
    pacsv.write_csv(pa.table(dict(cols, is_anomaly=labels)), tmp_path / "t.csv")
    with pytest.raises(InputError, match="row 7 has no label"):
        evaluate_path(tabular_bundle, tmp_path / "t.csv", "is_anomaly", tmp_path / "ev",
                      progress=False, normal_labels=("0",))
