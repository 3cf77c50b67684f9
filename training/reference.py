"""A reference likelihood for images: what plain local smoothness already explains.

Pixel likelihoods reward simple images. A thin MNIST "1" is mostly predictable dark background,
so a VAE trained on the other nine digits gives it a *higher* reconstruction probability than
the normal digits themselves: reconstruction probability (and error) rank digit 1 as the most
normal class. The likelihood-ratio fix (Ren et al., 2019, "Likelihood ratios for
out-of-distribution detection"; Serra et al., 2020, "Input complexity and out-of-distribution
detection with likelihood-based generative models") scores x by how much *better* the model
explains it than a generic model of image statistics that knows nothing of the normal class:

    score(x) = -log RP(x) + log p_ref(x)        (nats, higher = more anomalous)

The reference here is the simplest such model, the one a PNG encoder uses: each pixel predicted
linearly from its causal neighbours (left, up, up-left, up-right), the same in every position,
with a Gaussian residual whose variance is floored at the VAE's variance floor, so both terms are
densities of one family on one scale. It is fitted on the normal training images alone (closed-
form least squares, a few seconds) and exported inside the scoring graph, so the score is still
computed in one call. Per pixel, ``log p_ref(x_j)`` is added to the feature score: the heat map
shows where the VAE explains the image worse than local smoothness does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomaly.errors import InputError

#: Causal neighbours as (dy, dx) offsets, in the order of the fitted weights.
NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1))
_LOG_2PI = float(np.log(2 * np.pi))


class LocalReference(nn.Module):
    """log p_ref(x_j | causal neighbours) per pixel, (B, D) -> (B, D) nats.

    One predictor per channel: x_hat = sum_k w_k x[neighbour k] + b (zero outside the image),
    Gaussian residual with variance ``variance`` (per channel)."""

    kernel: torch.Tensor  # (C, 1, 3, 3) depthwise, causal taps only
    bias: torch.Tensor  # (C,)
    variance: torch.Tensor  # (C,)

    def __init__(self, shape: tuple[int, int, int], weights: np.ndarray, bias: np.ndarray,
                 variance: np.ndarray) -> None:
        super().__init__()
        c = shape[0]
        if weights.shape != (c, len(NEIGHBOURS)) or bias.shape != (c,) or \
                variance.shape != (c,) or float(np.min(variance)) <= 0:
            raise ValueError("reference parameters do not match the image shape")
        self.shape = tuple(shape)
        kernel = torch.zeros(c, 1, 3, 3)  # depthwise 3x3, only the causal taps set
        for k, (dy, dx) in enumerate(NEIGHBOURS):
            kernel[:, 0, 1 + dy, 1 + dx] = torch.as_tensor(weights[:, k], dtype=torch.float32)
        self.register_buffer("kernel", kernel)
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))
        self.register_buffer("variance", torch.as_tensor(variance, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        img = x.reshape(-1, c, h, w)  # (B, C, H, W)
        pred = F.conv2d(img, self.kernel, self.bias, padding=1, groups=c)  # (B, C, H, W)
        var = self.variance.reshape(1, c, 1, 1)
        ll = -0.5 * (_LOG_2PI + torch.log(var) + (img - pred) ** 2 / var)  # (B, C, H, W)
        return ll.reshape(x.shape[0], -1)  # (B, D)

    @classmethod
    def from_description(cls, shape: tuple[int, int, int],
                         description: dict[str, Any]) -> LocalReference:
        """The reference recorded in a bundle manifest (inverse of :meth:`describe`)."""
        return cls(shape, np.asarray(description["weights"], dtype=np.float64),
                   np.asarray(description["bias"], dtype=np.float64),
                   np.asarray(description["variance"], dtype=np.float64))

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters, recorded in the bundle manifest."""
        k = self.kernel[:, 0]  # (C, 3, 3)
        weights = [[float(k[ch, 1 + dy, 1 + dx]) for dy, dx in NEIGHBOURS]
                   for ch in range(k.shape[0])]
        return {"kind": "local", "neighbours": [list(n) for n in NEIGHBOURS],
                "weights": weights, "bias": [float(b) for b in self.bias],
                "variance": [float(v) for v in self.variance]}


def _neighbours(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H, W, 4) causal neighbour values, zero outside the image."""
    n, h, w = images.shape
    padded = np.zeros((n, h + 1, w + 2), dtype=np.float64)
    padded[:, 1:, 1:-1] = images
    return np.stack([padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in NEIGHBOURS],
                    axis=-1)


def fit_local_reference(x: np.ndarray, shape: tuple[int, int, int], var_floor: float,
                        chunk: int = 2048) -> LocalReference:
    """Least-squares fit on normal training images ``x`` (N, D), D = C*H*W, values in [0, 1].

    Normal equations accumulated in chunks, one pass (memory does not grow with N); the
    residual variance is floored at ``var_floor``, the VAE's own floor."""
    c, h, w = shape
    if x.ndim != 2 or x.shape[1] != c * h * w or x.shape[0] == 0:
        raise InputError(f"reference fit needs (N, {c * h * w}) images, got {x.shape}")
    if var_floor <= 0:
        raise InputError("the local reference needs a positive variance floor (Gaussian "
                         "likelihood); use --reference none with a Bernoulli decoder")
    k = len(NEIGHBOURS) + 1
    gram = np.zeros((c, k, k))  # A^T A per channel, A = [neighbours, 1] per pixel
    moment = np.zeros((c, k))  # A^T y
    energy = np.zeros(c)  # y^T y
    for start in range(0, x.shape[0], chunk):
        imgs = x[start:start + chunk].reshape(-1, c, h, w).astype(np.float64)
        for ch in range(c):
            a = _neighbours(imgs[:, ch]).reshape(-1, k - 1)
            a = np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)  # (N*H*W, 5)
            y = imgs[:, ch].reshape(-1)
            gram[ch] += a.T @ a
            moment[ch] += a.T @ y
            energy[ch] += y @ y
    coef = np.stack([np.linalg.lstsq(gram[ch], moment[ch], rcond=None)[0] for ch in range(c)])
    # Residual sum of squares from the same sums: |y - A w|^2 = y'y - 2 w'A'y + w'A'A w.
    sse = np.array([energy[ch] - 2 * coef[ch] @ moment[ch] + coef[ch] @ gram[ch] @ coef[ch]
                    for ch in range(c)])
    variance = np.maximum(sse / (x.shape[0] * h * w), var_floor)
    return LocalReference(shape, coef[:, :-1], coef[:, -1], variance)
