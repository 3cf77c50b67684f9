"""Baselines of the MNIST leave-one-digit-out benchmark: PCA reconstruction error, a
deterministic autoencoder with the VAE's architecture, and PyOD's VAE detector.

Every function takes the same split: ``x_train`` (N, 784) normal images for fitting, ``x_val``
(M, 784) held-out normal images for any choice (never anomalies), ``x_test`` (T, 784) to score.
Pixels are in [0, 1]; scores are "higher = more anomalous".
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training.vae import VAE

#: PCA sizes tried; the one with the best held-out probabilistic-PCA log-likelihood wins.
PCA_COMPONENTS = (8, 16, 32, 64, 128, 256)


@dataclass
class PCAResult:
    scores: np.ndarray  # (T,) squared reconstruction error
    components: int
    val_loglik: dict[int, float]  # mean held-out PPCA log-likelihood (nats/image) per size


def pca_scores(x_train: np.ndarray, x_val: np.ndarray, x_test: np.ndarray) -> PCAResult:
    """PCA reconstruction error with k chosen on normal validation data.

    Reconstruction error alone always prefers more components, so k is chosen by the held-out
    log-likelihood of probabilistic PCA (Tipping & Bishop, 1999), which trades the fit of the
    top-k subspace against the isotropic noise of the rest. The eigendecomposition is the one
    scikit-learn's PCA computes; doing it once serves every k."""
    from sklearn.decomposition import PCA

    pca = PCA(svd_solver="full").fit(x_train)
    eig = np.maximum(pca.explained_variance_.astype(np.float64), 1e-12)  # (r,)
    comps = pca.components_.astype(np.float64)  # (r, D)
    d = x_train.shape[1]

    def project(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xc = x.astype(np.float64) - pca.mean_
        return xc @ comps.T, (xc**2).sum(1)  # (N, r), (N,)

    pv, nv = project(x_val)
    val_ll: dict[int, float] = {}
    for k in PCA_COMPONENTS:
        sigma2 = max(float(eig[k:].sum() / (d - k)), 1e-12)
        resid = nv - (pv[:, :k] ** 2).sum(1)
        maha = (pv[:, :k] ** 2 / eig[:k]).sum(1) + resid / sigma2
        logdet = np.log(eig[:k]).sum() + (d - k) * math.log(sigma2)
        val_ll[k] = float(np.mean(-0.5 * (d * math.log(2 * math.pi) + logdet + maha)))
    best = max(val_ll, key=lambda k: val_ll[k])
    pt, nt = project(x_test)
    return PCAResult(nt - (pt[:, :best] ** 2).sum(1), best, val_ll)


@dataclass
class AEResult:
    scores: np.ndarray  # (T,) squared reconstruction error
    best_epoch: int
    epochs_run: int
    val_mse: float  # per image, summed over pixels


def _ae_reconstruct(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """Deterministic path through the VAE's networks: x -> mu(x) -> decoder mean (B, D)."""
    mu, _ = model.encoder(x)
    loc, scale_raw = model.decode(mu)
    return model.likelihood.mean(loc, scale_raw)


@torch.no_grad()
def _sq_error(model: VAE, x: torch.Tensor, batch: int = 2048) -> np.ndarray:
    model.eval()
    return torch.cat([(_ae_reconstruct(model, x[i : i + batch]) - x[i : i + batch])
                      .pow(2).sum(-1) for i in range(0, x.shape[0], batch)]).numpy()


def autoencoder_scores(model: VAE, x_train: np.ndarray, x_val: np.ndarray, x_test: np.ndarray,
                       epochs: int, patience: int, batch_size: int, lr: float,
                       seed: int) -> AEResult:
    """Train ``model`` (a freshly built VAE whose networks give the architecture) as a plain
    autoencoder: MSE of the decoder mean at z = mu(x), no noise, no KL. Same optimiser, batch,
    epochs and early stopping (on validation MSE) as the VAE."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, xv = torch.as_tensor(x_train), torch.as_tensor(x_val)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_epoch, best_state, epoch = math.inf, 0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(xt.shape[0], generator=gen)
        for i in range(0, xt.shape[0], batch_size):
            xb = xt[perm[i : i + batch_size]]
            loss = (_ae_reconstruct(model, xb) - xb).pow(2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = float(_sq_error(model, xv).mean())
        if val < best:
            best, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return AEResult(_sq_error(model, torch.as_tensor(x_test)), best_epoch, epoch, best)


def pyod_vae_scores(x_train: np.ndarray, x_test: np.ndarray, kl: bool, epochs: int,
                    seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """PyOD's ``VAE`` detector with its defaults except ``epoch_num`` (bounded for the time
    budget) and, with ``kl``, ``capacity=inf``: PyOD clamps the KL term to [0, capacity] and
    its default capacity 0.0 switches the KL term off, leaving a noisy autoencoder."""
    from pyod.models.vae import VAE as PyODVAE

    params: dict[str, Any] = {"epoch_num": epochs, "random_state": seed, "verbose": 0,
                              "device": "cpu"}
    if kl:
        params["capacity"] = float("inf")
    started = time.perf_counter()
    det = PyODVAE(**params).fit(x_train)
    scores = np.asarray(det.decision_function(x_test), dtype=np.float64)
    return scores, {**{k: v if v != float("inf") else "inf" for k, v in params.items()},
                    "fit_s": round(time.perf_counter() - started, 1)}
