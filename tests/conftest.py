"""Shared fixtures: small real data sets and bundles trained once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def make_tabular(n: int, seed: int, anomalies: int = 0) -> dict[str, np.ndarray]:
    """Rows from a 2-D latent factor model: 6 correlated numeric columns with unequal noise
    and a categorical column tied to the factors. Planted anomalies break the correlations."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1234).normal(size=(2, 6))  # fixed across calls
    noise = np.array([0.05, 0.05, 0.1, 0.1, 0.5, 1.0])  # per-column noise sd
    z = rng.normal(size=(n, 2))
    x = z @ mixing + rng.normal(size=(n, 6)) * noise
    color = np.where(z[:, 0] > 0, "red", "blue").astype(object)
    label = np.zeros(n, dtype=np.int64)
    if anomalies:
        idx = rng.choice(n, anomalies, replace=False)
        x[idx, :2] = rng.normal(size=(anomalies, 2)) * 2.0  # break the low-noise correlations
        label[idx] = 1
    cols: dict[str, np.ndarray] = {f"f{j}": x[:, j] for j in range(6)}
    cols["color"] = color
    cols["is_anomaly"] = label
    return cols


@pytest.fixture(scope="session")
def tabular_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.pipeline import tabular_config, train_tabular

    cols = make_tabular(4000, seed=0)
    cols.pop("is_anomaly")
    out = tmp_path_factory.mktemp("bundles") / "sensors"
    # 800 held-out rows at target FPR 0.05: 40 calibration scores above the threshold.
    train_tabular(cols, out, "sensors",
                  tabular_config(epochs=60, target_fpr=0.05, progress=False))
    return out


@pytest.fixture(scope="session")
def digits_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv VAE on sklearn's 8x8 digits without the 7s (trained from arrays, quickly)."""
    from sklearn.datasets import load_digits

    from anomaly.bundle import ImageInput
    from training.pipeline import image_config, train_images

    digits = load_digits()
    keep = digits.target != 7
    images = (digits.images[keep] / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    schema = ImageInput(height=8, width=8, channels=1, scale=255.0)
    out = tmp_path_factory.mktemp("bundles") / "digits"
    train_images(images, schema, out, "digits",
                 image_config(schema, epochs=25, progress=False))
    return out


def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest's summary: the tool-related and absent-data skips, as the last line."""
    from tests.skip_summary import report_skips

    report_skips(config)
