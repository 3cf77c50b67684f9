"""Encoder and decoder networks. Encoders map x (N, D) to (mu, logvar) (N, d_z); decoders map
z (N, d_z) to (loc, scale_raw) (N, D). Images travel flattened channel-first, so MLP and conv
models share one interface and one exported graph signature.

Decoders emit the ``scale_raw`` head only when the likelihood reads it (``heads=2``, Gaussian
features); with ``heads=1`` they return ``loc`` in its place, which saves half of the widest
layer for Bernoulli and categorical models."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, input_dim: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.net = _mlp([input_dim, *hidden, 2 * latent_dim])
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)  # (N, 2 d_z)
        return h[:, : self.latent_dim], h[:, self.latent_dim :]


class MLPDecoder(nn.Module):
    def __init__(self, latent_dim: int, hidden: Sequence[int], output_dim: int,
                 heads: int = 2) -> None:
        super().__init__()
        self.net = _mlp([latent_dim, *reversed(list(hidden)), heads * output_dim])
        self.output_dim = output_dim
        self.heads = heads

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(z)  # (N, heads * D)
        if self.heads == 1:
            return h, h
        return h[:, : self.output_dim], h[:, self.output_dim :]


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (H, W divisible by 4), then a dense layer."""

    def __init__(self, shape: tuple[int, int, int], channels: Sequence[int], dense: int,
                 latent_dim: int) -> None:
        super().__init__()
        c, h, w = shape
        if h % 4 or w % 4:
            raise ValueError(f"conv models need height and width divisible by 4, got {h}x{w}; "
                             "use --image-size to resize or --architecture mlp")
        c1, c2 = channels
        self.shape = shape
        self.latent_dim = latent_dim
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(c1, c2, 4, 2, 1), nn.LeakyReLU(0.1), nn.Flatten())
        self.head = _mlp([c2 * (h // 4) * (w // 4), dense, 2 * latent_dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(self.features(x.reshape(-1, *self.shape)))  # (N, 2 d_z)
        return h[:, : self.latent_dim], h[:, self.latent_dim :]


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`; the last transposed conv emits both heads."""

    def __init__(self, shape: tuple[int, int, int], channels: Sequence[int], dense: int,
                 latent_dim: int, heads: int = 2) -> None:
        super().__init__()
        c, h, w = shape
        c1, c2 = channels
        self.shape = shape
        self.heads = heads
        self.grid = (c2, h // 4, w // 4)
        self.dense = nn.Sequential(_mlp([latent_dim, dense, c2 * (h // 4) * (w // 4)]),
                                   nn.LeakyReLU(0.1))
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(c1, heads * c, 4, 2, 1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, h, w = self.shape
        out = self.deconv(self.dense(z).reshape(-1, *self.grid))  # (N, heads * C, H, W)
        loc = out[:, :c].reshape(-1, c * h * w)
        if self.heads == 1:
            return loc, loc
        return loc, out[:, c:].reshape(-1, c * h * w)
