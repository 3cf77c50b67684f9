"""A sample's noise depends on its own seed only, never on its batch mates."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.inference import latent_noise


def test_one_seed_for_all_rows_is_common_random_numbers() -> None:
    eps = latent_noise(7, batch=3, mc_samples=5, latent_dim=2)  # (L, B, d_z)
    assert eps.shape == (5, 3, 2) and eps.dtype == np.float32
    np.testing.assert_array_equal(eps[:, 0], eps[:, 2])


def test_per_row_seeds_do_not_depend_on_the_batch() -> None:
    alone = latent_noise([11], batch=1, mc_samples=4, latent_dim=3)
    mixed = latent_noise([3, 11, 5], batch=3, mc_samples=4, latent_dim=3)
    np.testing.assert_array_equal(mixed[:, 1], alone[:, 0])
    np.testing.assert_array_equal(latent_noise([2, 2], 2, 4, 3), latent_noise(2, 2, 4, 3))
    assert not np.array_equal(mixed[:, 0], mixed[:, 2])


def test_seed_count_must_match() -> None:
    with pytest.raises(ValueError, match="2 seeds for 3 samples"):
        latent_noise([1, 2], batch=3, mc_samples=4, latent_dim=3)
