"""Decoder likelihoods p(x | z), per input element, in log space.

The decoder emits two heads over the D inputs, ``loc`` and ``scale_raw`` (both (..., D)):

* Gaussian features: mean ``loc``, variance ``var_floor + softplus(scale_raw)``. The learned
  per-feature variance is what makes reconstruction *probability* better than reconstruction
  error (An & Cho, 2015): a feature that is noisy in normal data is not penalised for noise.
* Bernoulli features (data in [0, 1]): logits ``loc``; ``scale_raw`` unused.
* Categorical blocks (one-hot slots of a column): logits ``loc`` over the block; each slot's
  log-likelihood is ``x_k * log_softmax(loc_block)_k``, so the block sums to log p(category).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

LikelihoodKind = Literal["gaussian", "bernoulli", "mixed"]
#: A contiguous run of features of one kind: (kind, start, stop), kind one of
#: "gaussian", "bernoulli", "categorical".
Block = tuple[str, int, int]

_LOG_2PI = math.log(2 * math.pi)


def softplus(t: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(t)) written so that neither torch nor the exported graph overflows
    (ONNX exports of F.softplus / logsigmoid can become log(0) for saturated inputs)."""
    return torch.relu(t) + torch.log1p(torch.exp(-torch.abs(t)))


class Likelihood(nn.Module):
    """Elementwise log p(x_j | decoder output) over contiguous feature blocks."""

    def __init__(self, blocks: Sequence[Block], var_floor: float = 1e-3) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("a likelihood needs at least one feature block")
        expected = 0
        for kind, start, stop in blocks:
            if kind not in ("gaussian", "bernoulli", "categorical") or start != expected or \
                    stop <= start:
                raise ValueError(f"bad likelihood block {(kind, start, stop)}")
            expected = stop
        self.blocks = [tuple(b) for b in blocks]
        self.input_dim = expected
        self.var_floor = float(var_floor)

    @classmethod
    def uniform(cls, kind: Literal["gaussian", "bernoulli"], dim: int,
                var_floor: float = 1e-3) -> Likelihood:
        return cls([(kind, 0, dim)], var_floor)

    @property
    def needs_scale(self) -> bool:
        """Whether any block reads ``scale_raw``: decoders emit that head only if so."""
        return any(b[0] == "gaussian" for b in self.blocks)

    @property
    def kind(self) -> LikelihoodKind:
        kinds = {b[0] for b in self.blocks}
        if kinds == {"gaussian"}:
            return "gaussian"
        if kinds == {"bernoulli"}:
            return "bernoulli"
        return "mixed"

    def variance(self, scale_raw: torch.Tensor) -> torch.Tensor:
        return self.var_floor + softplus(scale_raw)

    def log_prob(self, x: torch.Tensor, loc: torch.Tensor, scale_raw: torch.Tensor) -> torch.Tensor:
        """x (B, D) against loc, scale_raw (..., B, D) -> log-likelihood per element (..., B, D).

        ``scale_raw`` is read only for Gaussian blocks (decoders without a scale head pass
        ``loc`` in its place)."""
        pieces = []
        for kind, a, b in self.blocks:
            xs, ls = x[..., a:b], loc[..., a:b]
            if kind == "gaussian":
                var = self.variance(scale_raw[..., a:b])
                pieces.append(-0.5 * (_LOG_2PI + torch.log(var) + (xs - ls) ** 2 / var))
            elif kind == "bernoulli":
                # x log sigmoid(l) + (1 - x) log sigmoid(-l) == x l - softplus(l)
                pieces.append(xs * ls - softplus(ls))
            else:
                pieces.append(xs * torch.log_softmax(ls, dim=-1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)

    def mean(self, loc: torch.Tensor, scale_raw: torch.Tensor) -> torch.Tensor:
        """E[x | z] per element (..., D): the reconstruction shown to users."""
        pieces = []
        for kind, a, b in self.blocks:
            ls = loc[..., a:b]
            if kind == "gaussian":
                pieces.append(ls)
            elif kind == "bernoulli":
                pieces.append(torch.sigmoid(ls))
            else:
                pieces.append(torch.softmax(ls, dim=-1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
