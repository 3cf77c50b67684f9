"""Raw input -> the graph's ``x`` (B, D) float32, using only what the bundle stores.

Tabular: numeric columns are standardised, categorical columns become one-hot blocks with a
trailing unknown slot. Images: decoded with Pillow, converted, resized, scaled to [0, 1] and
flattened channel-first. Bad values raise :class:`InputError` (strict) or are reported per row
(``strict=False``) so batch jobs can route them to a rejects file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from anomaly.errors import InputError, PayloadTooLargeError
from anomaly.schema import (
    UNKNOWN_CATEGORY,
    CategoricalColumn,
    ImageInput,
    NumericColumn,
    TabularInput,
)

#: Default ceiling on decoded pixels (width * height) against decompression bombs.
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass
class Prepared:
    """``x`` holds the rows that passed; ``index`` their positions in the input;
    ``rejects`` maps input position -> reason for the rows that did not."""

    x: np.ndarray  # (B, D) float32
    index: np.ndarray  # (B,) int64
    rejects: dict[int, str] = field(default_factory=dict)


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """List of row dicts -> dict of column lists (missing keys become None)."""
    if not rows:
        raise InputError("no rows given: send at least one row")
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(f"row {i} is not an object of column: value pairs")
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


class TabularPreprocessor:
    """Applies a :class:`TabularInput` schema to columns of raw values."""

    def __init__(self, schema: TabularInput) -> None:
        self.schema = schema
        self.feature_names: list[str] = []
        #: (start, stop) slice of x for each schema column, in schema order.
        self.blocks: list[tuple[int, int]] = []
        for col in schema.columns:
            start = len(self.feature_names)
            if isinstance(col, NumericColumn):
                self.feature_names.append(col.name)
            else:
                self.feature_names += [f"{col.name}={c}" for c in col.categories]
                self.feature_names.append(f"{col.name}={UNKNOWN_CATEGORY}")
            self.blocks.append((start, len(self.feature_names)))
        self._lookup = {
            col.name: {c: i for i, c in enumerate(col.categories)}
            for col in schema.columns if isinstance(col, CategoricalColumn)
        }

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.schema.columns]

    @property
    def input_dim(self) -> int:
        return len(self.feature_names)

    def transform(self, columns: Mapping[str, Sequence[Any] | np.ndarray],
                  strict: bool = True) -> Prepared:
        """Columns of raw values (extra columns ignored) -> :class:`Prepared`."""
        missing = [name for name in self.column_names if name not in columns]
        if missing:
            raise InputError(f"missing column(s) {missing}; the model expects "
                             f"{self.column_names}")
        n = len(columns[self.column_names[0]])
        x = np.zeros((n, self.input_dim), dtype=np.float32)
        bad: dict[int, str] = {}
        for col, (start, stop) in zip(self.schema.columns, self.blocks, strict=True):
            values = columns[col.name]
            if len(values) != n:
                raise InputError(f"column '{col.name}' has {len(values)} values, expected {n}")
            if isinstance(col, NumericColumn):
                num, problems = _to_float(col.name, values)
                for i, why in problems.items():
                    bad.setdefault(i, why)
                x[:, start] = (np.where(np.isfinite(num), num, col.mean) - col.mean) / col.std
            else:
                lookup = self._lookup[col.name]
                unknown = stop - start - 1
                for i, value in enumerate(_iter_values(values)):
                    if _is_missing(value):
                        bad.setdefault(i, f"column '{col.name}': value is missing")
                        continue
                    x[i, start + lookup.get(category_key(value), unknown)] = 1.0
        if bad and strict:
            i = min(bad)
            more = f" (and {len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
            raise InputError(f"row {i}: {bad[i]}{more}; fix or drop these rows before scoring")
        keep = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
        return Prepared(x[keep], keep, bad)

    def column_scores(self, feature_scores: np.ndarray) -> np.ndarray:
        """(B, D) per-feature scores -> (B, n_columns): one-hot blocks summed back into the
        column they encode (only the observed slot is non-zero, so the sum is that slot)."""
        return np.stack([feature_scores[:, a:b].sum(axis=1) for a, b in self.blocks], axis=1)


def _iter_values(values: Sequence[Any] | np.ndarray) -> Iterable[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else values


def category_key(value: Any) -> str:
    """Categories are stored as strings; 3 and 3.0 and "3" are the same category."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _to_float(name: str, values: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Values -> float64 array plus {row: reason} for missing, non-numeric or non-finite ones."""
    problems: dict[int, str] = {}
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "fiub":
        out = arr.astype(np.float64)
    else:
        out = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(_iter_values(values)):
            if _is_missing(value):
                problems[i] = f"column '{name}': value is missing"
                out[i] = np.nan
                continue
            try:
                out[i] = float(value)
            except (TypeError, ValueError, OverflowError):  # OverflowError: int beyond float
                problems[i] = f"column '{name}': {value!r} is not a number"
                out[i] = np.nan
    for i in np.flatnonzero(~np.isfinite(out)).tolist():
        problems.setdefault(i, f"column '{name}': value is {out[i]} (NaN or infinite)")
    return out, problems


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

    def decode(self, data: bytes, name: str = "image") -> np.ndarray:
        """Encoded image bytes -> (C, H, W) float32 in [0, 1]."""
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
            # Pillow's own guard fires in open() before the size check above can
            raise PayloadTooLargeError(f"{name} is too large to decode safely ({exc}); "
                                       "downscale it before scoring") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{name} could not be decoded as an image ({exc}); send "
                             "PNG, JPEG, BMP or TIFF bytes") from exc
        return self.from_pil(img)

    def from_pil(self, img: Image.Image) -> np.ndarray:
        s = self.schema
        img = img.convert("L" if s.channels == 1 else "RGB")
        if img.size != (s.width, s.height):
            img = img.resize((s.width, s.height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / s.scale
        return arr[None] if s.channels == 1 else arr.transpose(2, 0, 1)

    def transform_images(self, images: Sequence[bytes | np.ndarray | Image.Image]) -> np.ndarray:
        """Encoded bytes, PIL images, or already-sized (C, H, W) float arrays in [0, 1]
        -> x (B, C*H*W)."""
        if len(images) == 0:
            raise InputError("no images given: send at least one image")
        out = np.empty((len(images), self.input_dim), dtype=np.float32)
        for i, item in enumerate(images):
            if isinstance(item, bytes | bytearray | memoryview):
                arr = self.decode(bytes(item), name=f"image {i}")
            elif isinstance(item, Image.Image):
                arr = self.from_pil(item)
            else:
                arr = np.asarray(item, dtype=np.float32)
                if arr.size != self.input_dim:
                    raise InputError(f"image {i} has shape {arr.shape}; expected "
                                     f"{self.shape} (channels, height, width)")
            if not np.all(np.isfinite(arr)):
                raise InputError(f"image {i} has NaN or infinite pixels")
            out[i] = arr.reshape(-1)
        return out
