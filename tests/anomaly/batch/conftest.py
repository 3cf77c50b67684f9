"""Small bundles and data for the batch-scoring tests, trained once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_tabular

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str | Path, ok: bool = True, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    """``anomaly ...`` as a user runs it: a real subprocess."""
    proc = subprocess.run([sys.executable, "-m", "anomaly", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="session")
def sensors_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tabular bundle: 6 numeric columns and one categorical ('color'), 10 epochs."""
    from training.config import TrainConfig
    from training.pipeline import train_tabular

    cols = make_tabular(2000, seed=0)
    cols.pop("is_anomaly")
    out = tmp_path_factory.mktemp("batch-bundles") / "sensors"
    train_tabular(cols, out, "sensors", TrainConfig(epochs=10, progress=False,
                                                    target_fpr=0.05))
    return out


@pytest.fixture(scope="session")
def digits_images() -> np.ndarray:
    """sklearn's 8x8 digits as uint8 grey images (N, 8, 8)."""
    from sklearn.datasets import load_digits

    return (load_digits().images * (255 / 16)).round().astype(np.uint8)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory, digits_images: np.ndarray) -> Path:
    from anomaly.bundle import ImageInput
    from training.pipeline import image_config, train_images

    schema = ImageInput(height=8, width=8, channels=1, scale=255.0)
    images = (digits_images[:600] / 255.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    out = tmp_path_factory.mktemp("batch-bundles") / "digits"
    train_images(images, schema, out, "digits", image_config(schema, epochs=3, progress=False))
    return out


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory, digits_images: np.ndarray) -> Path:
    """Nested folder of PNG/BMP/TIFF/JPEG digits plus a corrupt PNG and an empty file."""
    root = tmp_path_factory.mktemp("images")
    formats = [("png", "PNG"), ("bmp", "BMP"), ("tif", "TIFF"), ("jpg", "JPEG")]
    for i, img in enumerate(digits_images[1000:1030]):
        ext, fmt = formats[i % len(formats)]
        folder = root / ("a" if i % 3 == 0 else "b/c" if i % 3 == 1 else ".")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).resize((16, 16)).save(folder / f"digit{i:03d}.{ext}", fmt)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, not listed")
    return root
