"""EXIF orientation: an image is scored as a viewer shows it, for bundles that say so."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomaly.bundle import ImageInput
from anomaly.errors import InputError
from anomaly.preprocessing import ImagePreprocessor
from anomaly.preprocessing.image import ORIENTATION

#: Orientation 6: stored landscape, shown rotated 90 degrees clockwise (a phone's portrait).
ROTATED = 6


def _tagged(stored: np.ndarray, fmt: str, orientation: int) -> bytes:
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    img.save(buf, format=fmt, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_an_image_with_an_orientation_tag_is_scored_upright(fmt: str) -> None:
    """A 4x6 image stored landscape with orientation 6 is the 6x4 portrait a viewer shows:
    a bundle with ``exif_orientation`` decodes it upright, pixel for pixel the stored
    pixels turned clockwise; a bundle written before the field decodes it as stored (TIFF
    excepted: Pillow turns a TIFF upright itself when it reads it)."""
    stored = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10  # (H, W) as stored
    data = _tagged(stored, fmt, ROTATED)
    with Image.open(io.BytesIO(data)) as img:
        assert img.getexif()[ORIENTATION] == ROTATED
        read = np.asarray(img.convert("L"), dtype=np.float32) / 255  # Pillow's read, lossy
    as_stored = np.rot90(read, k=1) if fmt == "TIFF" else read  # (4, 6)
    new = ImagePreprocessor(ImageInput(height=6, width=4, channels=1, exif_orientation=True))
    got = new.decode(data)
    assert got.shape == (1, 6, 4)
    np.testing.assert_array_equal(got[0], np.rot90(as_stored, k=-1))
    old = ImagePreprocessor(ImageInput(height=6, width=4, channels=1))
    assert old.schema.exif_orientation is False
    if fmt == "TIFF":
        np.testing.assert_array_equal(old.decode(data)[0], got[0])
    else:
        with pytest.raises(InputError, match="is 6x4"):
            old.decode(data, resize=False)
    untagged = _tagged(stored, fmt, 1)  # tagged "as stored": nothing turns
    got = ImagePreprocessor(ImageInput(height=4, width=6, channels=1, exif_orientation=True)
                            ).decode(untagged)
    np.testing.assert_allclose(got[0], stored / 255, atol=0 if fmt in ("PNG", "TIFF") else 0.05)


def test_a_folder_trains_on_upright_images(tmp_path: Path) -> None:
    """Training reads a folder as the scorer reads it: upright, and the bundle says so."""
    pytest.importorskip("torch")
    from training.datasets import load_image_folder

    stored = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    (tmp_path / "a.png").write_bytes(_tagged(stored, "PNG", ROTATED))
    images, schema = load_image_folder(tmp_path, progress=False)
    assert schema.exif_orientation is True
    np.testing.assert_array_equal(images[0, 0], np.rot90(stored, k=-1) / np.float32(255))
