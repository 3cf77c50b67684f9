"""Latent noise for Monte Carlo scoring, passed into the graph as ``eps``.

A sample's noise depends only on its own seed, never on what it is batched with: sample b's
column of ``eps`` is ``default_rng(seed_b).standard_normal((L, d_z))``. With the default
(every sample seed 0) all rows share the same draws (common random numbers): a row's score is
then a deterministic function of the row, identical offline, in batch jobs and in the service,
on CPU and GPU, and score *differences* between rows carry less Monte Carlo noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

DEFAULT_SEED = 0


@lru_cache(maxsize=64)
def _draws(seed: int, mc_samples: int, latent_dim: int) -> np.ndarray:
    out = np.random.default_rng(seed).standard_normal((mc_samples, latent_dim)).astype(np.float32)
    out.setflags(write=False)
    return out  # (L, d_z)


#: Shared-seed noise of at most this many floats is kept contiguous in a cache: small batches
#: (the service's, one sample at a time) then get their ``eps`` without a copy per call.
_CACHED_FLOATS = 1 << 16


@lru_cache(maxsize=32)
def _shared(seed: int, batch: int, mc_samples: int, latent_dim: int) -> np.ndarray:
    out = np.ascontiguousarray(np.broadcast_to(
        _draws(seed, mc_samples, latent_dim)[:, None, :], (mc_samples, batch, latent_dim)))
    out.setflags(write=False)
    return out  # (L, B, d_z)


def latent_noise(seeds: int | Sequence[int] | np.ndarray, batch: int, mc_samples: int,
                 latent_dim: int) -> np.ndarray:
    """``eps`` of shape (L, B, d_z) for ``batch`` samples with the given seed(s) (read-only;
    contiguous for per-row seeds and small shared-seed batches, else a broadcast view)."""
    if isinstance(seeds, int | np.integer):
        if batch * mc_samples * latent_dim <= _CACHED_FLOATS:
            return _shared(int(seeds), batch, mc_samples, latent_dim)
        return np.broadcast_to(_draws(int(seeds), mc_samples, latent_dim)[:, None, :],
                               (mc_samples, batch, latent_dim))
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for {batch} samples")
    unique = set(seeds)
    if len(unique) == 1:
        return latent_noise(int(next(iter(unique))), batch, mc_samples, latent_dim)
    return np.stack([_draws(int(s), mc_samples, latent_dim) for s in seeds], axis=1)
