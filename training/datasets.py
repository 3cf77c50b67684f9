"""Training data from disk (image folders) and the demo data that ships inside scikit-learn."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from anomaly.batch.sources import iter_image_files
from anomaly.bundle import ImageInput
from anomaly.errors import InputError
from anomaly.preprocessing import ImagePreprocessor, upright
from anomaly.progress import bar_options


def load_image_folder(root: str | os.PathLike[str], image_size: int | None = None,
                      channels: int | None = None,
                      progress: bool = True) -> tuple[np.ndarray, ImageInput]:
    """All images below ``root`` as (N, C, H, W) in [0, 1], decoded exactly as the scorer will
    decode them. Size and channels default to those of the first image."""
    files = list(iter_image_files(root))
    if not files:
        raise InputError(f"no images (png, jpg, bmp, tif, ...) found under {root}")
    if image_size is None or channels is None:
        try:
            with Image.open(files[0]) as first:
                w, h = upright(first).size  # as the scorer will see it
                mode_channels = 1 if first.mode in ("L", "1", "I;16", "I", "F") else 3
        except (OSError, ValueError) as exc:
            raise InputError(f"{files[0]} could not be decoded as an image ({exc}); remove it "
                             "or pass --image-size and --channels") from exc
        if image_size is None and w != h:
            raise InputError(f"{files[0]} is {w}x{h}; pass --image-size to pick a square size")
        image_size = image_size or w
        channels = channels or mode_channels
    if channels not in (1, 3):
        raise InputError(f"--channels must be 1 (grey) or 3 (RGB), got {channels}")
    schema = ImageInput(height=image_size, width=image_size, channels=channels,  # type: ignore[arg-type]
                        exif_orientation=True)
    prep = ImagePreprocessor(schema)
    out = np.empty((len(files), *prep.shape), dtype=np.float32)
    for i, f in enumerate(tqdm(files, desc="loading images", unit="img", disable=not progress,
                                      **bar_options())):
        out[i] = prep.decode(f.read_bytes(), name=str(f))
    return out, schema


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W) or (H, W, 3) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class DemoTable:
    """sklearn's breast-cancer table: benign rows are normal, malignant rows anomalous."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]  # includes 'is_anomaly'


def breast_cancer(seed: int = 0, test_fraction: float = 0.25) -> DemoTable:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    benign = data.target == 1  # sklearn: 0 = malignant, 1 = benign
    rng = np.random.default_rng(seed)
    benign_idx = rng.permutation(np.flatnonzero(benign))
    n_test = int(len(benign_idx) * test_fraction)
    train_idx = np.sort(benign_idx[n_test:])
    test_idx = np.sort(np.r_[benign_idx[:n_test], np.flatnonzero(~benign)])
    train = {n: data.data[train_idx, j] for j, n in enumerate(names)}
    test = {n: data.data[test_idx, j] for j, n in enumerate(names)}
    test["is_anomaly"] = (~benign[test_idx]).astype(np.int64)
    return DemoTable(train, test)


def write_digits_folders(root: Path, anomaly_digit: int, seed: int = 0,
                         test_fraction: float = 0.25) -> tuple[Path, Path]:
    """sklearn's 8x8 digits as PNG files: ``root/train/<digit>/`` holds normal digits only;
    ``root/test/normal/`` held-out normal digits and ``root/test/anomalous/`` every image of
    ``anomaly_digit``. Pixel values 0..16 are scaled to 0..255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(digits.target != anomaly_digit))
    n_test = int(len(normal) * test_fraction)
    train_dir, test_dir = root / "train", root / "test"
    for split, idx in (("train", normal[n_test:]), ("test/normal", normal[:n_test]),
                       ("test/anomalous", np.flatnonzero(digits.target == anomaly_digit))):
        for i in idx:
            target = root / split / (str(digits.target[i]) if split == "train" else "") / \
                f"{i:04d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png_bytes(pixels[i]))
    return train_dir, test_dir
