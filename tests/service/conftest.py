"""Fixtures for the service tests: bundles trained once per session on small real data
(sklearn's breast-cancer table, benign rows only; sklearn's 8x8 digits without the 7s), model
repositories built from them, and real uvicorn processes on free localhost ports."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

API_KEY = "test-key-3f9a"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class TrainedBundles:
    cancer: Path  # tabular, 30 numeric columns
    digits: Path  # 8x8 grey images
    cancer_rows: list[dict[str, float]]  # all 569 rows (benign and malignant)
    cancer_malignant: np.ndarray  # (569,) bool
    digit_images: np.ndarray  # (N, 8, 8) uint8 in [0, 255]
    digit_labels: np.ndarray  # (N,)


def cancer_table() -> tuple[list[str], np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    return names, data.data, data.target == 0  # target 0 = malignant


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundles:
    """Few epochs: these tests check the service, not detection quality."""
    from sklearn.datasets import load_digits

    from anomaly.bundle import ImageInput
    from training.pipeline import image_config, tabular_config, train_images, train_tabular

    root = tmp_path_factory.mktemp("service-bundles")
    names, x, malignant = cancer_table()
    benign = {n: x[~malignant, j] for j, n in enumerate(names)}
    train_tabular(benign, root / "cancer", "cancer",
                  tabular_config(epochs=10, target_fpr=0.05, progress=False))
    digits = load_digits()
    keep = digits.target != 7
    images = (digits.images[keep] / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    schema = ImageInput(height=8, width=8, channels=1, scale=255.0)
    train_images(images, schema, root / "digits", "digits",
                 image_config(schema, epochs=3, progress=False, target_fpr=0.05,
                              conv_channels=(8, 16), dense=64, latent_dim=8))
    rows = [dict(zip(names, map(float, r), strict=True)) for r in x]
    return TrainedBundles(root / "cancer", root / "digits", rows, malignant,
                          np.round(digits.images * 255 / 16).astype(np.uint8), digits.target)


def make_repo(bundles: TrainedBundles, root: Path) -> Path:
    """``root/cancer/1/`` (versioned layout) and ``root/digits/`` (bare bundle = version 1)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundles.cancer, root / "cancer" / "1")
    shutil.copytree(bundles.digits, root / "digits")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(repo: Path, log_dir: Path, *args: str, launcher: str = "module",
                 env: dict[str, str] | None = None, timeout_s: float = 90) -> Server:
    """A real service process; returns once /readyz answers 200.

    launcher: ``module`` (python -m service), ``anomaly`` (the console command) or
    ``uvicorn`` (uvicorn service.main:app, settings from ANOMALY_* only)."""
    port = free_port()
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    if launcher == "module":
        cmd = [sys.executable, "-m", "service", "--models", str(repo), "--port", str(port),
               *args]
    elif launcher == "anomaly":
        cmd = [str(VENV_BIN / "anomaly"), "serve", "--models", str(repo), "--port", str(port),
               *args]
    elif launcher == "uvicorn":
        full_env.update(ANOMALY_MODELS=str(repo))
        cmd = [sys.executable, "-m", "uvicorn", "service.main:app", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log", *args]
    else:  # pragma: no cover
        raise ValueError(launcher)
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n"
                               + log_path.read_text(errors="replace")[-4000:])
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("service did not become ready:\n" + log_path.read_text()[-4000:])


@pytest.fixture(scope="session")
def server(bundles: TrainedBundles, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """The shared server: API key, small body, pixel and item limits, 2 ms batching delay.
    Started with the ``anomaly serve`` console command."""
    root = tmp_path_factory.mktemp("server-main")
    repo = make_repo(bundles, root / "models")
    srv = start_server(repo, root, "--api-key", API_KEY, "--max-body-bytes", "262144",
                       "--max-image-pixels", "4096", "--max-items-per-request", "600",
                       "--max-queue-delay-us", "2000", "--max-batch-size", "64",
                       launcher="anomaly")
    yield srv
    srv.stop()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                total += sample.value
    return total
