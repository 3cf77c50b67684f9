"""The variational autoencoder, its ELBO, and the Monte Carlo reconstruction-probability graph.

q(z|x) = N(mu(x), diag exp(logvar(x))), p(z) = N(0, I), p(x|z) from :mod:`training.likelihood`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.likelihood import Likelihood
from training.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


@dataclass(frozen=True)
class ELBOTerms:
    """Per-sample terms, each (B,), in nats: elbo = rec - kl."""

    rec: torch.Tensor
    kl: torch.Tensor

    def loss(self, beta: float) -> torch.Tensor:
        return (-self.rec + beta * self.kl).mean()


class VAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                 latent_dim: int, architecture: str, config: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.architecture = architecture
        self.config = config

    @property
    def input_dim(self) -> int:
        return self.likelihood.input_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) -> mu, logvar (B, d_z). With ``config["encoder_clip"]`` = c the encoder
        reads x clipped to [-c, c] (the likelihood still scores the real x): one extreme value
        in a standardised table column (z of 2,000 on the ODDS-like count tables) would
        otherwise overflow the encoder's log-variance to inf."""
        clip = self.config.get("encoder_clip")
        return self.encoder(x if clip is None else x.clamp(-clip, clip))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., N, d_z) -> loc, scale_raw (..., N, D)."""
        lead = z.shape[:-1]
        loc, scale_raw = self.decoder(z.reshape(-1, self.latent_dim))
        return loc.reshape(*lead, -1), scale_raw.reshape(*lead, -1)

    def elbo(self, x: torch.Tensor, eps: torch.Tensor) -> ELBOTerms:
        """Single-sample ELBO with closed-form KL; ``eps`` (B, d_z) is the caller's noise."""
        mu, logvar = self.encode(x)  # (B, d_z) each
        z = mu + torch.exp(0.5 * logvar) * eps  # (B, d_z)
        loc, scale_raw = self.decode(z)  # (B, D)
        rec = self.likelihood.log_prob_sum(x, loc, scale_raw)  # (B,)
        return ELBOTerms(rec, kl_divergence(mu, logvar))

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Squared error of the decoder mean at z = mu(x), (B,): the baseline score."""
        mu, _ = self.encode(x)
        loc, scale_raw = self.decode(mu)
        return (self.likelihood.mean(loc, scale_raw) - x).pow(2).sum(-1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) in closed form, (B, d_z) -> (B,) nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


class ReconstructionProbability(nn.Module):
    """The exported scoring graph (An & Cho, Algorithm 4), in one call.

    Inputs ``x`` (B, D) preprocessed, ``eps`` (L, B, d_z) standard-normal noise. Outputs
    ``score`` (B,) = -log (1/L) sum_l p(x | z_l), ``feature_scores`` (B, D) the same per
    feature, ``reconstruction`` (B, D) the decoder mean averaged over the L samples.

    With a ``reference`` (a module x (B, D) -> log p_ref per feature (B, D), see
    :mod:`training.reference`) both scores become negative log likelihood ratios:
    ``-log RP(x) + log p_ref(x)``, and ``-log RP_j(x) + log p_ref(x_j)`` per feature.
    With ``kl`` the score adds KL(q(z|x) || p(z)), how atypical x's code is (the
    ``free_energy`` score kind), or with a ``latent_prior`` too, the weighted divergence of
    x's code from the fitted rows' codes (``aggregate_free_energy``, see
    :mod:`training.aggregate_posterior`); per-feature scores are unchanged.
    """

    def __init__(self, vae: VAE, reference: nn.Module | None = None, kl: bool = False,
                 latent_prior: nn.Module | None = None) -> None:
        super().__init__()
        self.vae = vae
        self.reference = reference
        self.kl = kl
        self.latent_prior = latent_prior

    def forward(self, x: torch.Tensor, eps: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.vae.encode(x)  # (B, d_z)
        z = mu + torch.exp(0.5 * logvar) * eps  # (L, B, d_z)
        loc, scale_raw = self.vae.decode(z)  # (L, B, D)
        ll = self.vae.likelihood.log_prob(x, loc, scale_raw)  # (L, B, D)
        # log L from the shape of eps, so L stays dynamic in the exported graph.
        log_l = torch.log(torch.ones_like(eps[:, :1, :1]).sum()).reshape(())
        score = log_l - torch.logsumexp(ll.sum(-1), dim=0)  # (B,)
        feature_scores = log_l - torch.logsumexp(ll, dim=0)  # (B, D)
        reconstruction = self.vae.likelihood.mean(loc, scale_raw).mean(0)  # (B, D)
        if self.kl and self.latent_prior is not None:
            score = score + self.latent_prior(mu, 0.5 * logvar)
        elif self.kl:
            score = score + kl_divergence(mu, logvar)
        if self.reference is not None:
            ref = self.reference(x)  # (B, D) log p_ref per feature
            score = score + ref.sum(-1)
            feature_scores = feature_scores + ref
        return score, feature_scores, reconstruction


def build_vae(input_dim: int, likelihood: Likelihood, architecture: str, latent_dim: int,
              hidden: tuple[int, ...] = (128, 64),
              image_shape: tuple[int, int, int] | None = None,
              conv_channels: tuple[int, int] = (32, 64), dense: int = 256,
              encoder_clip: float | None = None) -> VAE:
    """A VAE with the named architecture ("mlp" or "conv"; conv needs ``image_shape``)."""
    config: dict[str, Any] = {"latent_dim": latent_dim, "var_floor": likelihood.var_floor,
                              "encoder_clip": encoder_clip}
    heads = 2 if likelihood.needs_scale else 1
    if architecture == "mlp":
        enc: nn.Module = MLPEncoder(input_dim, hidden, latent_dim)
        dec: nn.Module = MLPDecoder(latent_dim, hidden, input_dim, heads)
        config["hidden"] = list(hidden)
    elif architecture == "conv":
        if image_shape is None:
            raise ValueError("the conv architecture is for images: give image_shape (C, H, W)")
        enc = ConvEncoder(image_shape, conv_channels, dense, latent_dim)
        dec = ConvDecoder(image_shape, conv_channels, dense, latent_dim, heads)
        config.update(conv_channels=list(conv_channels), dense=dense,
                      image_shape=list(image_shape))
    else:
        raise ValueError(f"unknown architecture {architecture!r}; use 'mlp' or 'conv'")
    return VAE(enc, dec, likelihood, latent_dim, architecture, config)
