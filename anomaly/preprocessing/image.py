"""Encoded images -> the graph's ``x`` (B, C*H*W) float32: decoded with Pillow, converted to
the bundle's channels, resized, scaled to [0, 1] and flattened channel-first. Decoding is
bounded (:data:`DEFAULT_MAX_PIXELS`) against decompression bombs."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anomaly.bundle.schema import ImageInput
from anomaly.errors import InputError, PayloadTooLargeError

#: Default ceiling on decoded pixels (width * height) against decompression bombs.
DEFAULT_MAX_PIXELS = 40_000_000
_MODES = {"L": "8-bit greyscale", "RGB": "8-bit RGB"}


#: The EXIF tag that says how a stored image is rotated or mirrored (1: as stored).
ORIENTATION = 0x0112


def upright(img: Image.Image) -> Image.Image:
    """The image as a viewer shows it: rotated and mirrored by its EXIF orientation tag (a
    phone's portrait photo is stored landscape with orientation 6); the image itself when
    it has no such tag."""
    if img.getexif().get(ORIENTATION, 1) in (1, None):
        return img
    return ImageOps.exif_transpose(img)


class ImagePreprocessor:
    """Applies an :class:`ImageInput` schema to encoded images or pixel arrays."""

    def __init__(self, schema: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.schema = schema
        self.max_pixels = max_pixels

    @property
    def input_dim(self) -> int:
        s = self.schema
        return s.channels * s.height * s.width

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one preprocessed image."""
        return self.schema.channels, self.schema.height, self.schema.width

    def decode(self, data: bytes, name: str = "image", resize: bool = True) -> np.ndarray:
        """Encoded image bytes -> (C, H, W) float32 in [0, 1]. ``resize=False``: an image of
        another size or colour mode is an InputError saying what the model takes, instead of
        being resized and converted."""
        if not data:
            raise InputError(f"{name} is empty; send PNG, JPEG, BMP or TIFF bytes")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                w, h = img.size
                if w * h > self.max_pixels:
                    raise PayloadTooLargeError(
                        f"{name} is {w}x{h} = {w * h} pixels, over the limit of "
                        f"{self.max_pixels}; downscale it before scoring")
                img.load()
        except PayloadTooLargeError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Pillow's own guard fires in open() before the size check above can; the limit
            # that applies is ours, or Pillow's (Image.MAX_IMAGE_PIXELS) if that is lower
            limit = self.max_pixels if Image.MAX_IMAGE_PIXELS is None else min(
                self.max_pixels, Image.MAX_IMAGE_PIXELS)
            raise PayloadTooLargeError(f"{name} is over the limit of {limit} pixels (width * "
                                       "height); downscale it before scoring") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" names an
            # address, which would make the same bad file give a different message each run
            detail = ("not a format Pillow can identify"
                      if isinstance(exc, UnidentifiedImageError) else str(exc))
            raise InputError(f"{name} could not be decoded as an image ({detail}); send "
                             "PNG, JPEG, BMP or TIFF bytes") from exc
        return self.from_pil(img, name, resize)

    def from_pil(self, img: Image.Image, name: str = "image", resize: bool = True
                 ) -> np.ndarray:
        s = self.schema
        if s.exif_orientation:
            img = upright(img)
        mode = "L" if s.channels == 1 else "RGB"
        if not resize and (img.mode != mode or img.size != (s.width, s.height)):
            raise InputError(
                f"{name} is {img.size[0]}x{img.size[1]} in mode {img.mode}; the model takes "
                f"{s.width}x{s.height} {_MODES[mode]} ({mode}) images: send that size and "
                "mode, or allow resizing and conversion (resize=true)")
        if img.mode.startswith("I;16"):
            return self._from_16_bit(img)
        img = img.convert(mode)
        if img.size != (s.width, s.height):
            img = img.resize((s.width, s.height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / s.scale
        return arr[None] if s.channels == 1 else arr.transpose(2, 0, 1)

    def _from_16_bit(self, img: Image.Image) -> np.ndarray:
        """A 16-bit greyscale image (PNG, TIFF: Pillow's ``I;16`` modes), its full scale
        65535 mapped onto the 8-bit scale the bundle divides by: 257 * v scores as the
        8-bit v. Pillow's ``convert("L")`` clips such values at 255 instead, which turns
        every pixel above 255/65535 of full scale white. Resized in float, so the 16 bits
        are kept until the model sees them."""
        s = self.schema
        arr = np.asarray(img, dtype=np.float32) * np.float32(255.0 / 65535.0)  # (H, W)
        if img.size != (s.width, s.height):
            resized = Image.fromarray(arr, mode="F").resize((s.width, s.height),
                                                            Image.Resampling.BILINEAR)
            arr = np.asarray(resized, dtype=np.float32)
        arr = arr[None] / np.float32(s.scale)  # (1, H, W)
        return arr if s.channels == 1 else np.repeat(arr, 3, axis=0)

    def transform_images(self, images: Sequence[bytes | np.ndarray | Image.Image],
                         resize: bool = True) -> np.ndarray:
        """Encoded bytes, PIL images, or already-sized (C, H, W) float arrays in [0, 1]
        -> x (B, C*H*W). ``resize=False`` rejects images of another size or mode."""
        if len(images) == 0:
            raise InputError("no images given: send at least one image")
        out = np.empty((len(images), self.input_dim), dtype=np.float32)
        for i, item in enumerate(images):
            if isinstance(item, bytes | bytearray | memoryview):
                arr = self.decode(bytes(item), name=f"image {i}", resize=resize)
            elif isinstance(item, Image.Image):
                arr = self.from_pil(item, f"image {i}", resize)
            else:
                arr = np.asarray(item, dtype=np.float32)
                if arr.size != self.input_dim:
                    raise InputError(f"image {i} has shape {arr.shape}; expected "
                                     f"{self.shape} (channels, height, width)")
            if not np.all(np.isfinite(arr)):
                raise InputError(f"image {i} has NaN or infinite pixels")
            out[i] = arr.reshape(-1)
        return out
