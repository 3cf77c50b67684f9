"""pandas DataFrames in and out: ``Scorer.score_frame`` gives exactly the scores of
``score_rows`` on the same columns, on the frame's own index; pandas' nullable, categorical
and text dtypes arrive as the values they stand for; bad frames fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly import read_bundle_schema
from anomaly.bundle import load_bundle
from anomaly.errors import InputError
from anomaly.inference import Scorer, frame_columns
from tests.conftest import make_tabular


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    cols = make_tabular(60, seed=7, anomalies=6)
    cols.pop("is_anomaly")
    return cols


def test_score_frame_equals_score_rows_on_the_frames_index(tabular_bundle: Path,
                                                           rows: dict[str, np.ndarray]) -> None:
    scorer = Scorer(tabular_bundle)
    index = pd.Index([f"id-{i}" for i in range(60)], name="sensor")
    frame = pd.DataFrame(rows, index=index)
    out = scorer.score_frame(frame, explain=2)
    want = scorer.score_rows(rows)
    assert out.index.equals(index)
    assert list(out.columns) == ["score", "p_value", "is_anomaly", "top1_column", "top1_score",
                                 "top2_column", "top2_score"]
    np.testing.assert_array_equal(out["score"].to_numpy(), want.scores)
    np.testing.assert_array_equal(out["p_value"].to_numpy(), want.p_values)
    np.testing.assert_array_equal(out["is_anomaly"].to_numpy(), want.is_anomaly)
    tops = scorer.top_columns(want, 2)
    assert out["top1_column"].tolist() == [t[0][0] for t in tops]
    np.testing.assert_allclose(out["top2_score"].to_numpy(), [t[1][1] for t in tops])
    assert list(scorer.score_frame(frame).columns) == ["score", "p_value", "is_anomaly"]
    with_se = scorer.score_frame(frame, score_se=True)
    assert want.score_se is not None and (want.score_se > 0).all()
    np.testing.assert_allclose(with_se["score_se"].to_numpy(), want.score_se)


def test_extra_columns_and_column_order_do_not_matter(tabular_bundle: Path,
                                                      rows: dict[str, np.ndarray]) -> None:
    scorer = Scorer(tabular_bundle)
    frame = pd.DataFrame(rows)
    shuffled = frame[list(reversed(frame.columns))].assign(note="x")
    np.testing.assert_array_equal(scorer.score_frame(shuffled)["score"],
                                  scorer.score_frame(frame)["score"])


def test_pandas_dtypes_arrive_as_their_values(tabular_bundle: Path,
                                              rows: dict[str, np.ndarray]) -> None:
    scorer = Scorer(tabular_bundle)
    plain = pd.DataFrame(rows)
    typed = plain.astype({"f0": "Float64", "f1": "float32", "color": "category"})
    typed["f2"] = pd.array(np.round(plain["f2"] * 0).astype(int), dtype="Int64")
    base = plain.assign(f2=np.round(plain["f2"] * 0).astype(int))
    np.testing.assert_allclose(scorer.score_frame(typed)["score"],
                               scorer.score_frame(base.astype({"f1": "float32"}))["score"])
    cols = frame_columns(typed.astype({"color": "string"}))
    assert cols["color"].dtype == object and set(cols["color"]) == {"red", "blue"}
    assert cols["f0"].dtype == np.float64 and cols["f2"].dtype == np.float64


def test_missing_values_name_the_row_by_its_index(tabular_bundle: Path,
                                                  rows: dict[str, np.ndarray]) -> None:
    scorer = Scorer(tabular_bundle)
    frame = pd.DataFrame(rows, index=range(100, 160))
    frame["color"] = frame["color"].astype("string")
    frame.loc[103, "color"] = pd.NA
    frame.loc[110, "color"] = None
    with pytest.raises(InputError, match=r"row with index 103: column 'color': value is "
                                         r"missing \(and 1 more bad rows\)"):
        scorer.score_frame(frame)
    frame = pd.DataFrame(rows, index=list("abcdefghij") * 6)
    frame["f0"] = frame["f0"].astype("Float64")
    frame.iloc[2, 0] = pd.NA
    with pytest.raises(InputError, match=r"row with index 'c': column 'f0': value is nan"):
        scorer.score_frame(frame)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns="f3"), r"missing column\(s\) \['f3'\]"),
    (lambda f: f.iloc[:0], "the DataFrame has no rows"),
    (lambda f: f.assign(f4=pd.Timestamp("2026-01-01")), "column 'f4' holds datetime64"),
    (lambda f: f.set_axis([*f.columns[:-1], 5], axis=1), "column names must be text"),
    (lambda f: f.set_axis(["f0", *f.columns[:-1]], axis=1), r"duplicate column name\(s\)"),
], ids=["missing", "empty", "datetime", "int-name", "duplicate"])
def test_bad_frames_fail_clearly(tabular_bundle: Path, rows: dict[str, np.ndarray],
                                 change: object, message: str) -> None:
    frame = change(pd.DataFrame(rows))  # type: ignore[operator]
    with pytest.raises(InputError, match=message):
        Scorer(tabular_bundle).score_frame(frame)


def test_score_rows_takes_a_frame_and_refuses_what_is_not_rows(
        tabular_bundle: Path, rows: dict[str, np.ndarray]) -> None:
    """The first call a pandas user writes, ``score_rows(df)``, gives the scores of the
    frame's columns (it was pandas' "truth value of a DataFrame is ambiguous"); what is not
    rows at all is one clear error that points arrays at ``score``."""
    scorer = Scorer(tabular_bundle)
    frame = pd.DataFrame(rows, index=pd.RangeIndex(100, 160))
    np.testing.assert_array_equal(scorer.score_rows(frame).scores,
                                  scorer.score_rows(rows).scores)
    for bad in (5, "f0", np.zeros((2, 3))):
        with pytest.raises(InputError, match=r"rows must be .* not \w+ \(an array already "
                                             r"encoded as the model's x goes to score\(x\)\)"):
            scorer.score_rows(bad)


def test_not_a_frame_and_an_image_bundle(tabular_bundle: Path, digits_bundle: Path,
                                         rows: dict[str, np.ndarray]) -> None:
    with pytest.raises(InputError, match="expected a pandas DataFrame, got dict"):
        Scorer(tabular_bundle).score_frame(rows)
    with pytest.raises(InputError, match="scores images, not rows"):
        Scorer(digits_bundle).score_frame(pd.DataFrame(rows))
    with pytest.raises(InputError, match="explain must be 0 or more"):
        Scorer(tabular_bundle).score_frame(pd.DataFrame(rows), explain=-1)


def test_schema_as_a_frame(tabular_bundle: Path, digits_bundle: Path) -> None:
    schema = load_bundle(tabular_bundle).manifest.input
    frame = read_bundle_schema(tabular_bundle)
    assert frame.equals(schema.to_frame())  # type: ignore[union-attr]
    assert list(frame.columns) == ["name", "type", "mean", "std", "n_categories", "categories"]
    assert frame["name"].tolist() == [f"f{j}" for j in range(6)] + ["color"]
    color = frame.set_index("name").loc["color"]
    assert color["type"] == "categorical" and sorted(color["categories"]) == ["blue", "red"]
    assert color["n_categories"] == 2 and np.isnan(color["mean"])
    assert (frame["std"].iloc[:6] > 0).all()
    with pytest.raises(InputError, match="scores 8x8 images with 1 channel"):
        read_bundle_schema(digits_bundle)


def test_anomaly_imports_pandas_only_when_a_frame_is_used() -> None:
    code = ("import sys, anomaly, anomaly.inference.frame, training.pipeline; "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "False"
