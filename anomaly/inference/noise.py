"""Latent noise for Monte Carlo scoring, passed into the graph as ``eps``.

A sample's noise depends only on its own seed, never on what it is batched with: sample b's
column of ``eps`` is a function of ``seed_b`` alone. With the default (every sample seed 0)
all rows share the same draws (common random numbers): a row's score is then a deterministic
function of the row, identical offline, in batch jobs and in the service, on CPU and GPU, and
score *differences* between rows carry less Monte Carlo noise.

Three ways to draw the L points (``NoiseMethod``), each from ``default_rng(seed)``:

* ``iid``: ``standard_normal((L, d_z))``, independent draws (what every bundle before the
  choice existed used, and still the default of their manifests);
* ``antithetic``: pairs ``e, -e`` (``e`` from ``standard_normal((ceil(L/2), d_z))``): the
  odd-order terms of the integrand cancel within a pair, the pairs are independent;
* ``sobol``: the first L points of a scrambled Sobol sequence (Owen scrambling seeded from
  the sample's seed, ``scipy.stats.qmc``), mapped through the normal inverse CDF: randomised
  quasi-Monte Carlo, the points spread evenly instead of at random.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal, get_args

import numpy as np

from anomaly.errors import InputError, MissingExtraError

DEFAULT_SEED = 0
NoiseMethod = Literal["iid", "antithetic", "sobol"]
NOISE_METHODS: tuple[str, ...] = get_args(NoiseMethod)


def check_method(method: str) -> NoiseMethod:
    if method not in NOISE_METHODS:
        raise InputError(f"unknown noise method {method!r}: use one of {', '.join(NOISE_METHODS)}")
    return method  # type: ignore[return-value]


def _sobol(seed: int, mc_samples: int, latent_dim: int) -> np.ndarray:
    try:
        from scipy.special import ndtri
        from scipy.stats import qmc
    except ImportError as exc:  # pragma: no cover - scipy is a dependency
        raise MissingExtraError("sobol noise", "train", "or just: pip install scipy") from exc
    with warnings.catch_warnings():  # L need not be a power of 2: a warning, not an error
        warnings.simplefilter("ignore", UserWarning)
        u = qmc.Sobol(latent_dim, scramble=True,
                      seed=np.random.default_rng(seed)).random(mc_samples)
    tiny = np.finfo(np.float64).tiny
    return ndtri(np.clip(u, tiny, 1 - 1e-16))  # (L, d_z)


@lru_cache(maxsize=64)
def _draws(seed: int, mc_samples: int, latent_dim: int, method: str = "iid") -> np.ndarray:
    if method == "iid":
        out = np.random.default_rng(seed).standard_normal((mc_samples, latent_dim))
    elif method == "antithetic":
        base = np.random.default_rng(seed).standard_normal(((mc_samples + 1) // 2, latent_dim))
        out = np.stack([base, -base], axis=1).reshape(-1, latent_dim)[:mc_samples]
    elif method == "sobol":
        out = _sobol(seed, mc_samples, latent_dim)
    else:
        check_method(method)
    out = out.astype(np.float32)
    out.setflags(write=False)
    return out  # (L, d_z)


#: Shared-seed noise of at most this many floats is kept contiguous in a cache: small batches
#: (the service's, one sample at a time) then get their ``eps`` without a copy per call.
_CACHED_FLOATS = 1 << 16


@lru_cache(maxsize=32)
def _shared(seed: int, batch: int, mc_samples: int, latent_dim: int, method: str
            ) -> np.ndarray:
    out = np.ascontiguousarray(np.broadcast_to(
        _draws(seed, mc_samples, latent_dim, method)[:, None, :],
        (mc_samples, batch, latent_dim)))
    out.setflags(write=False)
    return out  # (L, B, d_z)


def latent_noise(seeds: int | Sequence[int] | np.ndarray, batch: int, mc_samples: int,
                 latent_dim: int, method: str = "iid") -> np.ndarray:
    """``eps`` of shape (L, B, d_z) for ``batch`` samples with the given seed(s) (read-only;
    contiguous for per-row seeds and small shared-seed batches, else a broadcast view)."""
    if isinstance(seeds, int | np.integer):
        if batch * mc_samples * latent_dim <= _CACHED_FLOATS:
            return _shared(int(seeds), batch, mc_samples, latent_dim, method)
        return np.broadcast_to(_draws(int(seeds), mc_samples, latent_dim, method)[:, None, :],
                               (mc_samples, batch, latent_dim))
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for {batch} samples")
    unique = set(seeds)
    if len(unique) == 1:
        return latent_noise(int(next(iter(unique))), batch, mc_samples, latent_dim, method)
    return np.stack([_draws(int(s), mc_samples, latent_dim, method) for s in seeds], axis=1)
