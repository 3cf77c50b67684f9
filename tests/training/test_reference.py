"""The local-smoothness reference: fitted by least squares, computed the same by torch, numpy
and the exported graph, and recorded in the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from anomaly.bundle import ImageInput
from anomaly.errors import InputError
from tests.training.test_parity import numpy_reconstruction_probability
from training.export import OUTPUT_NAMES, export_onnx
from training.likelihood import Likelihood
from training.pipeline import image_config, train_images
from training.reference import NEIGHBOURS, LocalReference, fit_local_reference
from training.vae import ReconstructionProbability, build_vae


def numpy_reference(x: np.ndarray, shape: tuple[int, int, int], weights: np.ndarray,
                    bias: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """log p_ref per pixel by explicit loops over positions: (B, D)."""
    c, h, w = shape
    img = x.reshape(-1, c, h, w).astype(np.float64)
    out = np.empty_like(img)
    for ch in range(c):
        for y in range(h):
            for xx in range(w):
                pred = np.full(img.shape[0], bias[ch])
                for k, (dy, dx) in enumerate(NEIGHBOURS):
                    if 0 <= y + dy < h and 0 <= xx + dx < w:
                        pred += weights[ch, k] * img[:, ch, y + dy, xx + dx]
                v = variance[ch]
                out[:, ch, y, xx] = -0.5 * (np.log(2 * np.pi * v) +
                                            (img[:, ch, y, xx] - pred) ** 2 / v)
    return out.reshape(x.shape[0], -1)


def _ar_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2, 6, 7) images from a causal AR process with known coefficients per channel."""
    coef = np.array([[0.5, 0.3, 0.0, 0.0], [0.2, 0.1, 0.3, -0.2]])
    bias = np.array([0.1, -0.05])
    img = np.zeros((n, 2, 6, 7))
    for ch in range(2):
        for y in range(6):
            for x in range(7):
                pred = np.full(n, bias[ch])
                for k, (dy, dx) in enumerate(NEIGHBOURS):
                    if 0 <= y + dy < 6 and 0 <= x + dx < 7:
                        pred += coef[ch, k] * img[:, ch, y + dy, x + dx]
                img[:, ch, y, x] = pred + rng.normal(scale=0.2, size=n)
    return img


def test_fit_recovers_known_predictor_and_residual_variance() -> None:
    rng = np.random.default_rng(0)
    img = _ar_images(6000, rng)
    ref = fit_local_reference(img.reshape(6000, -1), (2, 6, 7), var_floor=1e-3, chunk=700)
    d = ref.describe()
    np.testing.assert_allclose(d["weights"], [[0.5, 0.3, 0.0, 0.0], [0.2, 0.1, 0.3, -0.2]],
                               atol=0.02)
    np.testing.assert_allclose(d["bias"], [0.1, -0.05], atol=0.01)
    np.testing.assert_allclose(d["variance"], [0.04, 0.04], rtol=0.05)  # noise sd 0.2
    # The floor wins when the residual is smaller than it.
    floored = fit_local_reference(img.reshape(6000, -1), (2, 6, 7), var_floor=0.1)
    assert floored.describe()["variance"] == pytest.approx([0.1, 0.1])


def test_module_matches_numpy_loops() -> None:
    rng = np.random.default_rng(1)
    shape = (2, 5, 6)
    weights, bias = rng.normal(size=(2, 4)), rng.normal(size=2)
    variance = np.array([0.1, 0.3])
    x = rng.random((7, 60))
    with torch.no_grad():
        module = LocalReference(shape, weights, bias, variance)
        got = module(torch.as_tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), numpy_reference(x, shape, weights, bias, variance),
                               rtol=1e-5, atol=1e-5)


def test_exported_graph_is_reconstruction_probability_plus_reference() -> None:
    """ONNX score = independent numpy -log RP + numpy log p_ref, per image and per pixel."""
    torch.manual_seed(0)
    shape = (1, 4, 4)
    vae = build_vae(16, Likelihood.uniform("gaussian", 16, var_floor=0.1), "mlp", latent_dim=3,
                    hidden=(7, 5))
    rng = np.random.default_rng(2)
    weights, bias, variance = rng.normal(size=(1, 4)) * 0.5, np.array([0.05]), np.array([0.1])
    reference = LocalReference(shape, weights, bias, variance)
    sess = ort.InferenceSession(export_onnx(vae, reference), providers=["CPUExecutionProvider"])
    x = rng.random((9, 16))
    ref_ll = numpy_reference(x, shape, weights, bias, variance)  # (B, D)
    for L in (1, 6):
        eps = rng.normal(size=(L, 9, 3))
        score, fs, _ = sess.run(OUTPUT_NAMES, {"x": x.astype(np.float32),
                                               "eps": eps.astype(np.float32)})
        rp, rp_fs = numpy_reconstruction_probability(vae, x, eps)
        np.testing.assert_allclose(score, rp + ref_ll.sum(1), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(fs, rp_fs + ref_ll, rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            t_score, t_fs, _ = ReconstructionProbability(vae, reference)(
                torch.as_tensor(x, dtype=torch.float32),
                torch.as_tensor(eps, dtype=torch.float32))
        np.testing.assert_allclose(score, t_score.numpy(), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(fs, t_fs.numpy(), rtol=1e-4, atol=1e-4)


def test_reference_needs_images_with_a_gaussian_decoder(tmp_path: Path) -> None:
    x = np.random.default_rng(3).random((200, 1, 4, 4)).astype(np.float32)
    schema = ImageInput(height=4, width=4, channels=1)
    config = image_config(schema, likelihood="bernoulli", epochs=1, progress=False)
    with pytest.raises(InputError, match="--reference none"):
        train_images(x, schema, tmp_path / "b", "b", config)
    assert not (tmp_path / "b").exists()


def test_image_bundle_records_how_it_scores(digits_bundle: Path) -> None:
    manifest = json.loads((digits_bundle / "bundle.json").read_text())
    config = manifest["model"]["config"]
    assert manifest["model"]["score"] == "likelihood_ratio"
    assert "score" not in config  # schema v2: one typed home
    assert config["reference"]["kind"] == "local"
    assert config["reference"]["variance"][0] >= 0.1  # floored at the VAE's variance floor
