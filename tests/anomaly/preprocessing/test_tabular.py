import io
import re

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from anomaly.bundle import (
    MISSING_CATEGORY,
    CategoricalColumn,
    ImageInput,
    NumericColumn,
    TabularInput,
)
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
    ([{"temp": float("nan"), "site": "a", "load": 1}], "'temp': value is missing"),
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


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_a_16_bit_image_scores_as_its_8_bit_twin(fmt: str) -> None:
    """A 16-bit greyscale file (PNG, TIFF) whose pixels are 257 * v decodes as the 8-bit
    image of v, at the model's size and resized, for grey and RGB models: its full scale is
    65535, where Pillow's own conversion would clip every value above 255 to white. A
    strict decode refuses it, saying what the model takes."""
    rng = np.random.default_rng(2)
    v = rng.integers(0, 256, size=(8, 8)).astype(np.uint8)

    def encode(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt)
        return buf.getvalue()

    eight, sixteen = encode(v), encode(v.astype(np.uint16) * 257)
    assert Image.open(io.BytesIO(sixteen)).mode.startswith("I;16")
    for size, channels in ((8, 1), (8, 3), (4, 1), (4, 3)):
        prep = ImagePreprocessor(ImageInput(height=size, width=size, channels=channels))
        want, got = prep.decode(eight), prep.decode(sixteen)
        assert got.shape == want.shape == (channels, size, size) and got.dtype == np.float32
        # at the model's size exact; resized within one 8-bit step (Pillow resizes 8-bit
        # images in fixed point and rounds each pixel; the 16-bit one is resized in float)
        np.testing.assert_allclose(got, want, atol=1e-6 if size == 8 else 1 / 255)
    strict = ImagePreprocessor(ImageInput(height=8, width=8, channels=1))
    with pytest.raises(InputError, match=r"in mode I;16.*8-bit greyscale"):
        strict.decode(sixteen, resize=False)


def test_a_wide_schema_names_at_most_ten_columns_in_an_error() -> None:
    """A row missing most of a 1,500-column schema: the message lists ten names and counts
    the rest, instead of 3,000 names."""
    prep = TabularPreprocessor(TabularInput(columns=[
        NumericColumn(name=f"f{i}", mean=0.0, std=1.0) for i in range(1500)]))
    with pytest.raises(InputError) as err:
        prep.encode_rows([{"f0": 1.0}])
    message = str(err.value)
    assert message.startswith("missing column(s) ['f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', "
                              "'f8', 'f9', 'f10'] and 1,489 more; the model expects ['f0', ")
    assert message.endswith("'f9'] and 1,490 more") and len(message) < 300


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


FILLED = TabularInput(columns=[
    NumericColumn(name="temp", mean=20.0, std=5.0, fill=22.5),
    CategoricalColumn(name="site", categories=[MISSING_CATEGORY, "a", "b"]),
    NumericColumn(name="load", mean=0.0, std=2.0),
])


def test_missing_values_are_filled_alike_by_every_encoder() -> None:
    """A column whose training rows had missing values fills them (numeric: its ``fill``;
    categorical: the missing category) the same way on the three ways in; blank text, null
    and NaN are all missing; an infinity is still a bad value, and a column with no fill
    (``load``) still rejects a missing value with the same reason everywhere."""
    prep = TabularPreprocessor(FILLED)
    rows = [{"temp": None, "site": None, "load": 1.0},
            {"temp": float("nan"), "site": "  ", "load": 2.0},
            {"temp": 25.0, "site": "b", "load": -2.0}]
    want = np.array([[0.5, 1, 0, 0, 0, 0.5], [0.5, 1, 0, 0, 0, 1], [1, 0, 0, 1, 0, -1]],
                    dtype=np.float32)  # temp, site=<missing>, site=a, site=b, unknown, load
    np.testing.assert_array_equal(prep.encode_rows(rows), want)
    np.testing.assert_array_equal(prep.transform(rows_to_columns(rows)).x, want)
    csv = pa.table({"temp": pa.array([None, b"NaN", b"25"], pa.binary()),
                    "site": pa.array([None, b"  ", b"b"], pa.binary()),
                    "load": pa.array([b"1", b"2", b"-2"], pa.binary())})
    x, reasons = prep.encode_arrow(csv, from_csv=True)
    np.testing.assert_array_equal(x, want)
    assert reasons == [None, None, None]
    typed = pa.table({"temp": pa.array([None, float("nan"), 25.0]),
                      "site": pa.array([None, "", "b"]), "load": pa.array([1.0, 2.0, -2.0])})
    np.testing.assert_array_equal(prep.encode_arrow(typed, from_csv=False)[0], want)
    bad = [{"temp": float("inf"), "site": "a", "load": 1.0},
           {"temp": 1.0, "site": "a", "load": None}]
    why = ["column 'temp': value is inf (NaN or infinite)", "column 'load': value is missing"]
    assert list(prep.transform(rows_to_columns(bad), strict=False).rejects.values()) == why
    arrow_bad = pa.table({"temp": pa.array([b"inf", b"1"], pa.binary()),
                          "site": pa.array([b"a", b"a"], pa.binary()),
                          "load": pa.array([b"1", None], pa.binary())})
    assert prep.encode_arrow(arrow_bad, from_csv=True)[1] == why
    for row, reason in zip(bad, why, strict=True):
        with pytest.raises(InputError, match=re.escape(reason)):
            prep.encode_rows([row])


@pytest.mark.parametrize("marker", ["NA", "?", "-", "--", "null", "None", "N/A", " nan ",
                                    "#N/A"])
def test_missing_markers_are_missing_on_every_way_in(marker: str) -> None:
    """The markers real exports write for a gap (UCI's ``?``, R's ``NA``, a report's ``-``)
    are missing values on all three ways in: filled where the column has a fill, in the
    missing category, and where the column has none, a row rejected as missing (not as "not
    a number", and never a category)."""
    prep = TabularPreprocessor(FILLED)
    row = {"temp": marker, "site": marker, "load": 1.0}
    want = np.array([[0.5, 1, 0, 0, 0, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(prep.encode_rows([row]), want)
    np.testing.assert_array_equal(prep.transform(rows_to_columns([row])).x, want)
    csv = pa.table({"temp": pa.array([marker.encode()], pa.binary()),
                    "site": pa.array([marker.encode()], pa.binary()),
                    "load": pa.array([b"1"], pa.binary())})
    x, reasons = prep.encode_arrow(csv, from_csv=True)
    np.testing.assert_array_equal(x, want)
    assert reasons == [None]
    why = "column 'load': value is missing"
    with pytest.raises(InputError, match=re.escape(why)):
        prep.encode_rows([{"temp": 1.0, "site": "a", "load": marker}])
    no_gaps = TabularPreprocessor(SCHEMA)
    with pytest.raises(InputError, match=re.escape("column 'site': value is missing")):
        no_gaps.encode_rows([{"temp": 1.0, "site": marker, "load": 1.0}])
    csv_bad = pa.table({"temp": pa.array([b"1"], pa.binary()),
                        "site": pa.array([b"a"], pa.binary()),
                        "load": pa.array([marker.encode()], pa.binary())})
    assert prep.encode_arrow(csv_bad, from_csv=True)[1] == [why]


def test_a_marker_learned_as_a_category_stays_that_category() -> None:
    """Bundles trained before ``?`` and ``-`` were missing markers may hold them as
    categories: such a bundle keeps scoring them as the category it learned."""
    old = TabularPreprocessor(TabularInput(columns=[
        CategoricalColumn(name="grade", categories=["-", "?", "a"])]))
    rows = [{"grade": "-"}, {"grade": "?"}, {"grade": "a"}]
    want = np.eye(4, dtype=np.float32)[:3]
    np.testing.assert_array_equal(old.encode_rows(rows), want)
    np.testing.assert_array_equal(old.transform(rows_to_columns(rows)).x, want)
    csv = pa.table({"grade": pa.array([b"-", b" ? ", b"a"], pa.binary())})
    np.testing.assert_array_equal(old.encode_arrow(csv, from_csv=True)[0], want)


def test_currency_and_per_cent_text_read_alike_by_every_encoder() -> None:
    """Amounts and rates as spreadsheets format them are numbers on every way in: ``$1,200``
    is 1200, ``-€5`` and ``$-5`` are -5, ``12.5%`` is 0.125, accounting's ``(1,200.50)`` is
    -1200.5 and a typeset minus (U+2212) is a minus; a sign in two places, a currency sign
    behind the number, a currency and a per cent sign at once, or a bracket that does not
    close are not numbers."""
    prep = TabularPreprocessor(TabularInput(columns=[
        NumericColumn(name="v", mean=0.0, std=1.0)]))
    texts = ["$1,200.00", "-€5", "$-5", "12.5%", " £ 3 ", "-1,000%", "(1,200.50)", "($7)",
             "(5%)", "\u22122.5", "\u2212$1,000"]
    want = np.array([[1200.0], [-5.0], [-5.0], [0.125], [3.0], [-10.0], [-1200.5], [-7.0],
                     [-0.05], [-2.5], [-1000.0]], dtype=np.float32)
    rows = [{"v": t} for t in texts]
    np.testing.assert_allclose(prep.encode_rows(rows), want, rtol=1e-7)
    np.testing.assert_allclose(prep.transform(rows_to_columns(rows)).x, want, rtol=1e-7)
    csv = pa.table({"v": pa.array([t.encode() for t in texts], pa.binary())})
    np.testing.assert_allclose(prep.encode_arrow(csv, from_csv=True)[0], want, rtol=1e-7)
    for text in ("-$-5", "5$", "$5%", "+-5", "$", "%", "1,23%", "$1,23", "(5", "5)", "(-5)",
                 "((5))", "()", "\u2212-5"):
        with pytest.raises(InputError, match=re.escape(f"{text!r} is not a number")):
            prep.encode_rows([{"v": text}])


def test_a_fill_is_stored_only_when_set() -> None:
    """Bundles without missing values keep the manifest they had (no ``fill`` key)."""
    plain, filled = SCHEMA.columns[0], FILLED.columns[0]
    assert "fill" not in plain.model_dump(mode="json")
    assert filled.model_dump(mode="json")["fill"] == 22.5
    assert NumericColumn.model_validate(filled.model_dump(mode="json")) == filled


def test_thousands_separated_numbers_read_alike_by_every_encoder() -> None:
    """``"12,345.5"`` is 12345.5 on every way in (row dicts, columns, CSV text via Arrow);
    a comma that does not separate groups of three digits is still not a number."""
    prep = TabularPreprocessor(TabularInput(columns=[
        NumericColumn(name="amount", mean=1000.0, std=1000.0)]))
    rows = [{"amount": "12,345.5"}, {"amount": "-1,000"}, {"amount": " 2,000,000 "}]
    want = np.array([[11.3455], [-2.0], [1999.0]], dtype=np.float32)
    np.testing.assert_allclose(prep.encode_rows(rows), want, rtol=1e-6)
    np.testing.assert_allclose(prep.transform(rows_to_columns(rows)).x, want, rtol=1e-6)
    csv = pa.table({"amount": pa.array([b"12,345.5", b"-1,000", b" 2,000,000 "], pa.binary())})
    np.testing.assert_allclose(prep.encode_arrow(csv, from_csv=True)[0], want, rtol=1e-6)
    for text in ("1,23", "12,3456", "1,234,56", ",123"):
        with pytest.raises(InputError, match=re.escape(f"{text!r} is not a number")):
            prep.encode_rows([{"amount": text}])


def test_standard_scores_are_clipped_as_np_clip_clips() -> None:
    """The encoder's clip (maximum then minimum, in place) gives np.clip's values bit for
    bit: ordinary values, values beyond the bound either way, infinities and NaN."""
    from anomaly.preprocessing import MAX_STANDARD
    from anomaly.preprocessing.tabular import _standardise

    rng = np.random.default_rng(3)
    raw = np.concatenate([rng.normal(size=(50, 4)) * 10 ** rng.uniform(-3, 30, size=(50, 4)),
                          [[np.inf, -np.inf, np.nan, 1e300]]])
    means, stds = rng.normal(size=4), rng.uniform(1e-6, 5, size=4)
    want = np.clip((raw - means) / stds, -MAX_STANDARD, MAX_STANDARD)
    got = _standardise(raw, means, stds)
    np.testing.assert_array_equal(got, want)  # NaN where NaN
    assert np.abs(got[np.isfinite(got)]).max() == MAX_STANDARD
