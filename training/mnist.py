"""A small reader for the idx format of the original MNIST files (numpy + gzip, no download).

idx layout (big-endian): two zero bytes, a type code (0x08 = uint8), the number of dimensions
n, then n uint32 sizes, then the data in C order. ``.gz`` files are decompressed on the fly.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

#: idx type codes -> numpy dtypes (big-endian where it matters).
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}

#: File stems of the four MNIST files, by split.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def parse_idx(data: bytes) -> np.ndarray:
    """Decode the bytes of one (uncompressed) idx file into an array of its shape and type."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an idx file: the magic number must start with two zero bytes")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise ValueError(f"unknown idx type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError("truncated idx header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"idx payload is {len(data) - header} bytes, shape {shape} of "
                         f"{dtype} needs {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(
        dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file, gzip-compressed when its name ends in ``.gz``."""
    p = Path(path)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    return parse_idx(raw)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{stem}(.gz) not found in {root}")


def load_mnist(root: str | os.PathLike[str], split: str = "train"
               ) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ("train" or "test") from ``root``: images (N, 28, 28) uint8 and
    labels (N,) uint8."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images_stem, labels_stem = FILES[split]
    images = read_idx(_find(Path(root), images_stem))
    labels = read_idx(_find(Path(root), labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: images {images.shape} and labels {labels.shape} disagree")
    return images, labels
