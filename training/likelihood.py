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

import numpy as np
import torch
from torch import nn

LikelihoodKind = Literal["gaussian", "bernoulli", "mixed"]
#: A contiguous run of features of one kind: (kind, start, stop), kind one of
#: "gaussian", "bernoulli", "categorical".
Block = tuple[str, int, int]

_LOG_2PI = math.log(2 * math.pi)
#: Logit of the padding slots of the categorical grid (:meth:`Likelihood.categorical_grid`):
#: exp(-1e30 - max) == 0, and 0 * -1e30 stays finite.
PAD_LOGIT = -1e30


def softplus(t: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(t)) written so that neither torch nor the exported graph overflows
    (ONNX exports of F.softplus / logsigmoid can become log(0) for saturated inputs)."""
    return torch.relu(t) + torch.log1p(torch.exp(-torch.abs(t)))


class Likelihood(nn.Module):
    """Elementwise log p(x_j | decoder output) over contiguous feature blocks."""

    _gaussian: torch.Tensor  # (G,) Gaussian features
    _bernoulli: torch.Tensor  # (NB,)
    _grid: torch.Tensor  # (n_cat * K_max,) categorical grid over features + one pad column

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
        self.blocks: list[Block] = [(str(k), int(a), int(b)) for k, a, b in blocks]
        self.input_dim = expected
        self.var_floor = float(var_floor)
        grid = self.categorical_grid()
        # features of each kind, and the categorical grid over x / loc padded by one column
        for kind in ("gaussian", "bernoulli"):
            self.register_buffer(f"_{kind}", torch.as_tensor(self.dims(kind), dtype=torch.long),
                                 persistent=False)
        self.register_buffer("_grid", torch.as_tensor(
            np.where(grid < 0, expected, grid).reshape(-1), dtype=torch.long), persistent=False)
        self._grid_shape = grid.shape

    def dims(self, kind: str) -> list[int]:
        """The features of one kind, in order."""
        return [j for k, a, b in self.blocks if k == kind for j in range(a, b)]

    def categorical_grid(self) -> np.ndarray:
        """(n_categorical_columns, K_max) feature index of each slot of each categorical
        block, -1 for padding: every block's log-sum-exp is then one reduction."""
        cats = [(a, b) for k, a, b in self.blocks if k == "categorical"]
        grid = np.full((len(cats), max((b - a for a, b in cats), default=0)), -1)
        for c, (a, b) in enumerate(cats):
            grid[c, : b - a] = np.arange(a, b)
        return grid

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

    def log_prob_sum(self, x: torch.Tensor, loc: torch.Tensor, scale_raw: torch.Tensor
                     ) -> torch.Tensor:
        """``log_prob(x, loc, scale_raw).sum(-1)``, (...,), with one op chain per kind of
        feature instead of one per block (categorical blocks through one padded grid):
        what the ELBO needs, at a fraction of the per-op overhead of a training step."""
        total: torch.Tensor | None = None
        D = self.input_dim

        def pick(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return t if idx.numel() == D else torch.index_select(t, -1, idx)

        gauss, bern = self._gaussian, self._bernoulli
        if gauss.numel():
            var = self.variance(pick(scale_raw, gauss))
            d = pick(x, gauss) - pick(loc, gauss)
            total = -0.5 * (torch.log(var) + d * d / var).sum(-1) - 0.5 * _LOG_2PI * gauss.numel()
        if bern.numel():
            ls = pick(loc, bern)
            part = (pick(x, bern) * ls - softplus(ls)).sum(-1)
            total = part if total is None else total + part
        if self._grid_shape[0]:
            shape = (*loc.shape[:-1], *self._grid_shape)
            lead = loc.shape[:-1]
            pad = torch.full((*lead, 1), PAD_LOGIT, dtype=loc.dtype, device=loc.device)
            logit = torch.index_select(torch.cat([loc, pad], -1), -1, self._grid).reshape(shape)
            xpad = torch.cat([x, torch.zeros_like(x[..., :1])], -1)
            xc = torch.index_select(xpad, -1, self._grid).reshape(*x.shape[:-1],
                                                                  *self._grid_shape)
            part = (xc * torch.log_softmax(logit, -1)).sum((-2, -1))
            total = part if total is None else total + part
        assert total is not None
        return total

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
