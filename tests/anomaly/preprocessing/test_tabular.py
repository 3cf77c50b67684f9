import io

import numpy as np
import pytest
from PIL import Image

from anomaly.bundle import CategoricalColumn, ImageInput, NumericColumn, TabularInput
from anomaly.errors import InputError, PayloadTooLargeError
from anomaly.preprocessing import ImagePreprocessor, TabularPreprocessor, rows_to_columns

SCHEMA = TabularInput(columns=[
    NumericColumn(name="temp", mean=20.0, std=5.0),
    CategoricalColumn(name="site", categories=["a", "b"]),
    NumericColumn(name="load", mean=0.0, std=2.0),
])


def test_tabular_layout_and_values() -> None:
    prep = TabularPreprocessor(SCHEMA)
    assert prep.feature_names == ["temp", "site=a", "site=b", "site=<unknown>", "load"]
    assert prep.blocks == [(0, 1), (1, 4), (4, 5)]
    rows = [{"temp": 25, "site": "b", "load": -2, "extra": "ignored"},
            {"temp": "15.0", "site": "zz", "load": 4.0}]
    x = prep.transform(rows_to_columns(rows)).x
    np.testing.assert_allclose(x, [[1, 0, 1, 0, -1], [-1, 0, 0, 1, 2]])


def test_integer_categories_match_their_string_form() -> None:
    schema = TabularInput(columns=[CategoricalColumn(name="code", categories=["3", "7"])])
    x = TabularPreprocessor(schema).transform({"code": np.array([7, 3.0, "3"], dtype=object)}).x
    np.testing.assert_array_equal(x.argmax(1), [1, 0, 0])


@pytest.mark.parametrize(("rows", "message"), [
    ([{"temp": 1, "site": "a"}], r"missing column\(s\) \['load'\]"),
    ([{"temp": "hot", "site": "a", "load": 1}], "'hot' is not a number"),
    ([{"temp": float("nan"), "site": "a", "load": 1}], "NaN or infinite"),
    ([{"temp": float("inf"), "site": "a", "load": 1}], "NaN or infinite"),
    ([{"temp": 1, "site": None, "load": 1}], "missing"),
    ([{"temp": None, "site": "a", "load": 1}], "missing"),
])
def test_bad_rows_raise_clear_errors(rows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InputError, match=message):
        TabularPreprocessor(SCHEMA).transform(rows_to_columns(rows))


def test_non_strict_reports_rejects_and_keeps_good_rows() -> None:
    cols = {"temp": ["1", "x", "3", "4"], "site": ["a", "a", None, "b"], "load": [1, 2, 3, 4]}
    out = TabularPreprocessor(SCHEMA).transform(cols, strict=False)
    assert out.index.tolist() == [0, 3]
    assert set(out.rejects) == {1, 2}
    assert "not a number" in out.rejects[1] and "missing" in out.rejects[2]


def test_column_scores_sum_one_hot_blocks() -> None:
    prep = TabularPreprocessor(SCHEMA)
    fs = np.arange(10, dtype=np.float64).reshape(2, 5)
    np.testing.assert_allclose(prep.column_scores(fs), [[0, 6, 4], [5, 21, 9]])


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_image_decode_converts_resizes_and_scales() -> None:
    prep = ImagePreprocessor(ImageInput(height=4, width=4, channels=1))
    rgb = np.full((8, 8, 3), 255, dtype=np.uint8)
    out = prep.decode(_png(rgb))
    assert out.shape == (1, 4, 4)
    np.testing.assert_allclose(out, 1.0)
    x = prep.transform_images([_png(rgb), np.zeros((1, 4, 4))])
    assert x.shape == (2, 16)


def test_image_errors() -> None:
    prep = ImagePreprocessor(ImageInput(height=4, width=4, channels=1), max_pixels=100)
    with pytest.raises(InputError, match="could not be decoded"):
        prep.decode(b"definitely not an image")
    with pytest.raises(InputError, match="empty"):
        prep.decode(b"")
    with pytest.raises(PayloadTooLargeError, match="over the limit"):
        prep.decode(_png(np.zeros((20, 20), dtype=np.uint8)))
    with pytest.raises(InputError, match="shape"):
        prep.transform_images([np.zeros((3, 4, 4))])
