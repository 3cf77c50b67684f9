"""The idx reader: synthetic files of every layout it accepts, bad files it must refuse, and the
real MNIST files when ../shared is present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from training.mnist import load_mnist, parse_idx, read_idx

MNIST = SHARED_DATA / "mnist"


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def test_round_trip_uint8_and_big_endian_types(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(idx_bytes(images, 0x08))
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(ints, 0x0C)), ints)
    floats = np.array([[0.5, -1.25]], dtype=np.float32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(floats, 0x0D)), floats)


def test_read_idx_gzip_and_plain(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    raw = idx_bytes(labels, 0x08)
    (tmp_path / "l.idx").write_bytes(raw)
    (tmp_path / "l.idx.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "l.idx"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "l.idx.gz"), labels)


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "type code"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x00\x01", "payload"),
])
def test_malformed_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_idx(data)


def test_load_mnist_pairs_images_and_labels(tmp_path: Path) -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(imgs, 0x08)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels, 0x08))
    x, y = load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(x, imgs)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(FileNotFoundError):
        load_mnist(tmp_path, "train")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels[:5], 0x08))
    with pytest.raises(ValueError, match="disagree"):
        load_mnist(tmp_path, "test")


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST not present at {MNIST}")
def test_real_mnist_matches_published_statistics() -> None:
    x, y = load_mnist(MNIST, "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                   974, 1009])
    assert abs(float(x.mean()) - 33.7912) < 1e-3
