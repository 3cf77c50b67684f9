"""The exported scoring graph: :class:`~training.vae.ReconstructionProbability`'s arithmetic
with the constant work folded into the weights, and a score-only variant.

Same inputs, same scores (to float32 rounding; ``tests/training/test_export_parity.py``), less
work per call, all of it decided once at export:

* **Score only** (``explain=False``): no per-feature log-likelihood, no log-sum-exp over
  (L, B, D), no reconstruction: the score needs only each draw's log-likelihood summed over
  features, (L, B). onnxruntime does not prune outputs a caller does not fetch, so the bundle
  holds a score-only graph beside the full one (``explain=True``): the full graph pruned to
  its ``score`` and ``log_weights`` (:func:`training.export.prune_to_outputs`), the same
  nodes this variant exports to. The variant itself scores cross-fitting's fold models in
  torch (:func:`training.bundle_graphs.score_unexported`).
* **Heads split by feature kind.** The decoder's last layer becomes one head per kind
  (Gaussian mean, Gaussian scale, Bernoulli logits, categorical logits) with its rows in a
  kind-sorted feature order, so no (L, B, D) slice or concat is ever made; the scale head
  keeps only the rows of Gaussian features (the others were never read).
* **Categorical blocks padded in the weights**: the categorical head emits a
  (n_columns, K_max) grid whose pad slots have zero weights and a -1e30 bias, so all blocks'
  log-sum-exps are one reduction instead of one slice and one reduction per column.
* **Folded constants**: the encoder's log-variance rows are pre-scaled by 0.5 (sigma =
  exp(h), exact: a power of two), -0.5 log(2 pi) per Gaussian feature is one scalar added to
  the (L, B) sum, and softplus is log(1 + exp(min(t, 80))) with max(t, .) for the tail:
  one Log per element instead of Relu, Abs, Neg, Exp, Add, Log, Add.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from training.likelihood import PAD_LOGIT
from training.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from training.vae import VAE

_LOG_2PI = math.log(2 * math.pi)
#: exp(80) is finite in float32; above it softplus(t) == t to float32 precision.
_EXP_CAP = 80.0


def _softplus(t: torch.Tensor) -> torch.Tensor:
    """log(1 + e^t), exact where the product's softplus is and one Log per element."""
    return torch.maximum(t, torch.log(torch.exp(torch.clamp(t, max=_EXP_CAP)) + 1.0))


def _rows(layer: nn.Linear, rows: np.ndarray, pad_rows: np.ndarray | None = None) -> nn.Linear:
    """A Linear computing the given output rows of ``layer`` (-1 = a pad row: zero weights,
    bias -1e30)."""
    assert layer.bias is not None
    w, b = layer.weight.detach(), layer.bias.detach()
    index = torch.as_tensor(np.maximum(rows, 0), dtype=torch.long)
    out = nn.Linear(layer.in_features, len(rows))
    with torch.no_grad():
        out.weight.copy_(w[index])
        out.bias.copy_(b[index])
        pad = torch.as_tensor(rows < 0)
        out.weight[pad] = 0.0
        out.bias[pad] = PAD_LOGIT
    return out


def _channels(layer: nn.ConvTranspose2d, start: int, stop: int) -> nn.ConvTranspose2d:
    """Output channels start:stop of a transposed convolution."""
    bias = layer.bias
    assert bias is not None
    out = nn.ConvTranspose2d(layer.in_channels, stop - start, layer.kernel_size,  # type: ignore[arg-type]
                             layer.stride, layer.padding)  # type: ignore[arg-type]
    with torch.no_grad():
        out.weight.copy_(layer.weight.detach()[:, start:stop])
        out.bias.copy_(bias.detach()[start:stop])  # type: ignore[union-attr]
    return out


class _Encoder(nn.Module):
    """x (B, D) -> mu, log sigma (B, d_z); log sigma = 0.5 logvar with the 0.5 in the
    weights."""

    def __init__(self, encoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        if isinstance(encoder, MLPEncoder):
            layers = list(encoder.net)
            self.features: nn.Module = nn.Identity()
            self.shape: tuple[int, ...] | None = None
        elif isinstance(encoder, ConvEncoder):
            layers = list(encoder.head)
            self.features = encoder.features
            self.shape = encoder.shape
        else:  # pragma: no cover - build_vae makes only these
            raise TypeError(f"cannot export encoder {type(encoder).__name__}")
        last = layers[-1]
        assert isinstance(last, nn.Linear)
        head = nn.Linear(last.in_features, last.out_features)
        with torch.no_grad():
            scale = torch.ones(last.out_features, 1)
            scale[latent_dim:] = 0.5
            head.weight.copy_(last.weight.detach() * scale)
            head.bias.copy_(last.bias.detach() * scale[:, 0])
        self.body = nn.Sequential(*layers[:-1], head)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) -> mu, log sigma (B, d_z) each."""
        h = x if self.shape is None else self.features(x.reshape(-1, *self.shape))
        h = self.body(h)  # (B, 2 d_z)
        return h[:, : self.latent_dim], h[:, self.latent_dim:]


class _Decoder(nn.Module):
    """z (N, d_z) -> the hidden layer the heads read; heads: named output layers."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        if isinstance(decoder, MLPDecoder):
            layers = list(decoder.net)
            self.body: nn.Module = nn.Sequential(*layers[:-1])
            self.grid: tuple[int, ...] | None = None
            self.last: nn.Module = layers[-1]
        elif isinstance(decoder, ConvDecoder):
            self.body = nn.Sequential(decoder.dense)
            self.grid = decoder.grid
            self.deconv = nn.Sequential(*list(decoder.deconv)[:-1])
            self.last = list(decoder.deconv)[-1]
        else:  # pragma: no cover
            raise TypeError(f"cannot export decoder {type(decoder).__name__}")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.body(z)
        if self.grid is not None:
            h = self.deconv(h.reshape(-1, *self.grid))
        return h


class ScoringGraph(nn.Module):
    """x (B, D), eps (L, B, d_z) -> score (B,) [, feature_scores (B, D), reconstruction
    (B, D)], log_weights (L, B): the outputs of :class:`~training.vae.ReconstructionProbability`,
    computed leaner, and each draw's log p(x | z_l) summed over features (the terms of the
    score's log-mean-exp, from which :mod:`anomaly.inference.uncertainty` gets its error)."""

    inverse: torch.Tensor  # (D,) kind order -> feature order
    x_gauss: torch.Tensor  # (G,) features of Gaussian kind
    x_bern: torch.Tensor  # (NB,)
    x_cat: torch.Tensor  # (n_cat * K,) categorical grid over x padded with a zero column
    cat_real: torch.Tensor  # (NC,) the grid's real (not padding) slots

    def __init__(self, vae: VAE, reference: nn.Module | None = None, explain: bool = False,
                 kl: bool = False, latent_prior: nn.Module | None = None) -> None:
        super().__init__()
        self.kl = kl
        # with kl: the code against the fitted rows' codes (training.aggregate_posterior)
        # instead of N(0, I)
        self.latent_prior = latent_prior
        self.encoder_clip = vae.config.get("encoder_clip")
        lik = vae.likelihood
        dims = {kind: lik.dims(kind) for kind in ("gaussian", "bernoulli", "categorical")}
        order = np.array(dims["gaussian"] + dims["bernoulli"] + dims["categorical"])
        D = vae.input_dim
        self.n_gauss, self.n_bern, self.n_cat = (len(dims[k]) for k in ("gaussian", "bernoulli",
                                                            "categorical"))
        self.explain = explain
        self.input_dim = D
        self.latent_dim = vae.latent_dim
        self.encoder = _Encoder(vae.encoder, vae.latent_dim)
        self.decoder = _Decoder(vae.decoder)
        self.reference = reference
        self.permuted = not np.array_equal(order, np.arange(D))
        self.register_buffer("inverse", torch.as_tensor(np.argsort(order), dtype=torch.long))
        g, nb = dims["gaussian"], dims["bernoulli"]
        self.register_buffer("x_gauss", torch.as_tensor(g, dtype=torch.long))
        self.register_buffer("x_bern", torch.as_tensor(nb, dtype=torch.long))
        grid = lik.categorical_grid()  # (n_cat, K), -1 = padding
        self.cat_shape = grid.shape
        # x padded with a zero column at index D, read through the grid
        self.register_buffer("x_cat", torch.as_tensor(np.where(grid < 0, D, grid).reshape(-1),
                                                      dtype=torch.long))
        self.register_buffer("cat_real", torch.as_tensor(np.flatnonzero(grid.reshape(-1) >= 0),
                                                         dtype=torch.long))
        self.var_floor = lik.var_floor
        self.heads = nn.ModuleDict()
        last = self.decoder.last
        if isinstance(last, nn.Linear):
            if self.n_gauss:
                self.heads["loc_g"] = _rows(last, np.array(g))
                self.heads["scale"] = _rows(last, np.array(g) + D)
            if self.n_bern:
                self.heads["loc_b"] = _rows(last, np.array(nb))
            if self.n_cat:
                self.heads["loc_c"] = _rows(last, grid.reshape(-1))
        else:  # conv: one kind over all pixels, channels (loc, scale)
            assert isinstance(last, nn.ConvTranspose2d) and self.n_cat == 0
            c = int(vae.config["image_shape"][0])  # channels
            self.heads["loc_g" if self.n_gauss else "loc_b"] = _channels(last, 0, c)
            if self.n_gauss:
                self.heads["scale"] = _channels(last, c, 2 * c)

    def _head(self, name: str, h: torch.Tensor, lead: tuple[int, int]) -> torch.Tensor:
        return self.heads[name](h).reshape(lead[0], lead[1], -1)  # (L, B, width)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        clip = self.encoder_clip
        mu, log_sigma = self.encoder(x if clip is None else x.clamp(-clip, clip))  # (B, d_z)
        sigma = torch.exp(log_sigma)
        z = mu + sigma * eps  # (L, B, d_z)
        lead = (eps.shape[0], eps.shape[1])
        h = self.decoder(z.reshape(-1, self.latent_dim))  # (L*B, hidden)
        terms: list[torch.Tensor] = []  # (L, B) each: log p(x | z_l) of one kind of feature
        per_feature: list[torch.Tensor] = []  # (L, B, n) in kind order, when explaining
        means: list[torch.Tensor] = []
        if self.n_gauss:
            xg = x if self.n_gauss == self.input_dim else torch.index_select(x, 1, self.x_gauss)
            loc = self._head("loc_g", h, lead)  # (L, B, G)
            var = _softplus(self._head("scale", h, lead)) + self.var_floor
            d = xg - loc
            e = torch.log(var) + d * d / var  # (L, B, G): -2 log p - log 2 pi
            terms.append(-0.5 * e.sum(-1) - 0.5 * _LOG_2PI * self.n_gauss)
            if self.explain:
                per_feature.append(-0.5 * (e + _LOG_2PI))
                means.append(loc)
        if self.n_bern:
            xb = x if self.n_bern == self.input_dim else torch.index_select(x, 1, self.x_bern)
            logit = self._head("loc_b", h, lead)  # (L, B, NB)
            ll = xb * logit - _softplus(logit)
            terms.append(ll.sum(-1))
            if self.explain:
                per_feature.append(ll)
                means.append(torch.sigmoid(logit))
        if self.n_cat:
            xpad = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)  # (B, D + 1)
            xc = torch.index_select(xpad, 1, self.x_cat).reshape(-1, *self.cat_shape)  # (B, C, K)
            logit = self._head("loc_c", h, lead).reshape(lead[0], lead[1], *self.cat_shape)
            # one LogSoftmax over the grid: onnxruntime's kernel for a short last axis is
            # 2.4x faster than its ReduceLogSumExp (measured, 57k rows of 9 slots)
            log_p = torch.log_softmax(logit, dim=-1)  # (L, B, n_cat, K)
            terms.append((xc * log_p).sum((-2, -1)))
            if self.explain:
                flat = (lead[0], lead[1], -1)
                per_feature.append(torch.index_select((xc * log_p).reshape(flat), 2,
                                                      self.cat_real))
                means.append(torch.index_select(torch.exp(log_p).reshape(flat), 2,
                                                self.cat_real))
        # log L from the shape of eps, so L stays dynamic in the exported graph
        log_l = torch.log(torch.ones_like(eps[:, :1, :1]).sum()).reshape(())
        total = terms[0]
        for term in terms[1:]:
            total = total + term  # (L, B)
        score = log_l - torch.logsumexp(total, dim=0)  # (B,)
        if self.kl and self.latent_prior is not None:
            score = score + self.latent_prior(mu, log_sigma)  # (B,)
        elif self.kl:  # KL(q(z|x) || N(0, I)) = sum 0.5 (mu^2 + sigma^2 - 1) - log sigma
            score = score + (0.5 * (mu * mu + sigma * sigma - 1.0) - log_sigma).sum(-1)
        ref = self.reference(x) if self.reference is not None else None  # (B, D)
        if ref is not None:
            score = score + ref.sum(-1)
        if not self.explain:
            return score, total
        ll_all = per_feature[0] if len(per_feature) == 1 else torch.cat(per_feature, dim=-1)
        feature_scores = log_l - torch.logsumexp(ll_all, dim=0)  # (B, D) kind order
        mean = means[0] if len(means) == 1 else torch.cat(means, dim=-1)
        reconstruction = mean.mean(0)  # (B, D)
        if self.permuted:
            feature_scores = torch.index_select(feature_scores, 1, self.inverse)
            reconstruction = torch.index_select(reconstruction, 1, self.inverse)
        if ref is not None:
            feature_scores = feature_scores + ref
        return score, feature_scores, reconstruction, total
