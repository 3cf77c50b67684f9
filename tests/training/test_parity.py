"""The exported graph computes exactly the reconstruction probability: checked against an
independent numpy implementation of the formula, and against the torch model on real data."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from scipy.special import logsumexp

from training.config import TrainConfig
from training.export import OUTPUT_NAMES, export_onnx
from training.likelihood import Likelihood
from training.trainer import fit
from training.vae import VAE, ReconstructionProbability, build_vae

BLOCKS = [("gaussian", 0, 3), ("categorical", 3, 6), ("gaussian", 6, 7), ("bernoulli", 7, 9)]


def _numpy_mlp(layers: list[torch.nn.Linear], h: np.ndarray) -> np.ndarray:
    for i, layer in enumerate(layers):
        h = h @ layer.weight.detach().numpy().T.astype(np.float64) + \
            layer.bias.detach().numpy().astype(np.float64)
        if i < len(layers) - 1:
            h = np.where(h > 0, h, 0.1 * h)  # LeakyReLU(0.1)
    return h


def numpy_reconstruction_probability(vae: VAE, x: np.ndarray, eps: np.ndarray
                                     ) -> tuple[np.ndarray, np.ndarray]:
    """An & Cho Algorithm 4 in float64 numpy: score (B,), feature_scores (B, D)."""
    enc = [m for m in vae.encoder.net if isinstance(m, torch.nn.Linear)]
    dec = [m for m in vae.decoder.net if isinstance(m, torch.nn.Linear)]
    d_z, D = vae.latent_dim, vae.input_dim
    h = _numpy_mlp(enc, x)
    mu, logvar = h[:, :d_z], h[:, d_z:]
    z = mu + np.exp(0.5 * logvar) * eps  # (L, B, d_z)
    out = _numpy_mlp(dec, z.reshape(-1, d_z)).reshape(eps.shape[0], x.shape[0], 2 * D)
    loc, raw = out[..., :D], out[..., D:]
    ll = np.empty_like(loc)  # (L, B, D)
    for kind, a, b in vae.likelihood.blocks:
        xs, ls = x[:, a:b], loc[..., a:b]
        if kind == "gaussian":
            var = vae.likelihood.var_floor + np.logaddexp(0.0, raw[..., a:b])
            ll[..., a:b] = -0.5 * (np.log(2 * np.pi * var) + (xs - ls) ** 2 / var)
        elif kind == "bernoulli":
            ll[..., a:b] = xs * np.log(1 / (1 + np.exp(-ls))) + \
                (1 - xs) * np.log(1 / (1 + np.exp(ls)))
        else:
            ll[..., a:b] = xs * (ls - logsumexp(ls, axis=-1, keepdims=True))
    L = eps.shape[0]
    score = -(logsumexp(ll.sum(-1), axis=0) - np.log(L))
    feature_scores = -(logsumexp(ll, axis=0) - np.log(L))
    return score, feature_scores


def _session(vae: VAE) -> ort.InferenceSession:
    return ort.InferenceSession(export_onnx(vae), providers=["CPUExecutionProvider"])


def test_onnx_matches_numpy_formula_with_fixed_weights() -> None:
    torch.manual_seed(0)
    vae = build_vae(9, Likelihood(BLOCKS, var_floor=0.05), "mlp", latent_dim=3, hidden=(7, 5))
    rng = np.random.default_rng(0)
    B = 11
    x = rng.normal(size=(B, 9))
    x[:, 3:6] = np.eye(3)[rng.integers(0, 3, B)]  # one-hot block
    x[:, 7:9] = rng.random((B, 2))  # Bernoulli targets in [0, 1]
    sess = _session(vae)
    for L in (1, 4, 25):  # L is a dynamic axis of the graph
        eps = rng.normal(size=(L, B, 3))
        score, fs, recon = sess.run(OUTPUT_NAMES, {"x": x.astype(np.float32),
                                           "eps": eps.astype(np.float32)})
        ref_score, ref_fs = numpy_reconstruction_probability(vae, x, eps)
        np.testing.assert_allclose(score, ref_score, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(fs, ref_fs, rtol=1e-4, atol=1e-4)
        assert recon.shape == (B, 9)
        # one-hot slots that are 0 contribute nothing; the block sums to log p(category)
        assert np.all(np.abs(fs[:, 3:6][x[:, 3:6] == 0]) < 1e-6)


def test_log_space_never_underflows() -> None:
    """Probabilities of e^-10000 would be 0 in float32; the score must stay finite."""
    torch.manual_seed(1)
    vae = build_vae(50, Likelihood.uniform("gaussian", 50, var_floor=1e-3), "mlp", 2, (8,))
    x = np.full((3, 50), 50.0, dtype=np.float32)  # very far from anything decoded
    eps = np.random.default_rng(0).normal(size=(8, 3, 2)).astype(np.float32)
    score, fs, _ = _session(vae).run(OUTPUT_NAMES, {"x": x, "eps": eps})
    assert np.all(np.isfinite(score)) and np.all(score > 1e4)
    assert np.all(np.isfinite(fs))


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_onnx_matches_torch_on_real_data(architecture: str) -> None:
    """sklearn's 8x8 digits (real images): a briefly trained model, torch vs onnxruntime."""
    from sklearn.datasets import load_digits

    x = (load_digits().images / 16.0).reshape(-1, 64).astype(np.float32)
    torch.manual_seed(0)
    vae = build_vae(64, Likelihood.uniform("bernoulli", 64), architecture, latent_dim=6,
                    hidden=(64,), image_shape=(1, 8, 8), conv_channels=(8, 16), dense=32)
    fit(vae, x[:1200], x[1200:1400], TrainConfig(epochs=3, kl_warmup_epochs=1, progress=False))
    eps = np.random.default_rng(5).normal(size=(10, 397, 6)).astype(np.float32)
    with torch.no_grad():
        ref = ReconstructionProbability(vae)(torch.from_numpy(x[1400:]), torch.from_numpy(eps))
    got = _session(vae).run(OUTPUT_NAMES, {"x": x[1400:], "eps": eps})
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-4)
