"""Labelled inputs and HTML reports made once for the report tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from PIL import Image

from anomaly.evaluation import EvaluationReport, HtmlReport, evaluate_path, write_report
from tests.conftest import make_tabular


@dataclass(frozen=True)
class Made:
    source: Path
    evaluation: EvaluationReport
    page: HtmlReport


def digit_folder(root: Path, per_class: int = 12) -> Path:
    """sklearn digits as PNGs: ``normal/`` 3s, ``anomalous/`` 7s (the bundle never saw 7s)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for sub, digit in (("normal", 3), ("anomalous", 7)):
        (root / sub).mkdir(parents=True)
        for i in np.flatnonzero(digits.target == digit)[:per_class]:
            buf = io.BytesIO()
            Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8)).save(
                buf, format="PNG")
            (root / sub / f"{i:04d}.png").write_bytes(buf.getvalue())
    return root


@pytest.fixture(scope="session")
def table_report(tabular_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Made:
    tmp = tmp_path_factory.mktemp("report-table")
    pacsv.write_csv(pa.table(make_tabular(300, seed=4, anomalies=30)), tmp / "t.csv")
    evaluation = evaluate_path(tabular_bundle, tmp / "t.csv", "is_anomaly", tmp / "ev",
                               progress=False)
    page = write_report(tabular_bundle, tmp / "t.csv", evaluation, tmp / "report.html", top=5)
    return Made(tmp / "t.csv", evaluation, page)


@pytest.fixture(scope="session")
def image_report(digits_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Made:
    tmp = tmp_path_factory.mktemp("report-images")
    folder = digit_folder(tmp / "imgs")
    evaluation = evaluate_path(digits_bundle, folder, out_dir=tmp / "ev", progress=False)
    page = write_report(digits_bundle, folder, evaluation, tmp / "report.html", top=4)
    return Made(folder, evaluation, page)
