"""What makes training fast must not change what it computes: the ELBO's per-kind sum equals
the per-block log-likelihood summed, and the thread choice follows the model's size only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.likelihood import Likelihood
from training.trainer import SINGLE_THREAD_MACS, choose_threads, macs_per_row, train_threads
from training.vae import build_vae

BLOCKS = [("gaussian", 0, 3), ("categorical", 3, 6), ("gaussian", 6, 7), ("bernoulli", 7, 9),
          ("categorical", 9, 11), ("categorical", 11, 15)]


@pytest.mark.parametrize("blocks", [BLOCKS, [("gaussian", 0, 15)], [("bernoulli", 0, 15)],
                                    [("categorical", 0, 4), ("categorical", 4, 15)]])
def test_log_prob_sum_is_the_sum_of_log_prob(blocks: list[tuple[str, int, int]]) -> None:
    lik = Likelihood(blocks, var_floor=1e-2)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.random((6, 15)), dtype=torch.float32)
    for k, a, b in blocks:
        if k == "categorical":
            x[:, a:b] = torch.as_tensor(np.eye(b - a)[rng.integers(0, b - a, 6)])
    loc = torch.randn(4, 6, 15, requires_grad=True) * 3  # (L, B, D): leading axes too
    raw = torch.randn(4, 6, 15, requires_grad=True) * 3
    want = lik.log_prob(x, loc, raw).sum(-1)
    got = lik.log_prob_sum(x, loc, raw)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    g_want = torch.autograd.grad(want.sum(), (loc, raw), allow_unused=True)
    g_got = torch.autograd.grad(got.sum(), (loc, raw), allow_unused=True)
    for a_, b_ in zip(g_got, g_want, strict=True):
        if b_ is None:
            assert a_ is None or torch.all(a_ == 0)
        else:
            torch.testing.assert_close(a_, b_, rtol=1e-5, atol=1e-5)


def test_small_models_train_on_one_thread_big_ones_on_torch_s_count() -> None:
    config = TrainConfig()
    small = build_vae(91, Likelihood.uniform("gaussian", 91), "mlp", 8, (128, 64))
    assert macs_per_row(small) == 91 * 128 + 128 * 64 + 64 * 16 + 8 * 64 + 64 * 128 + 128 * 182
    assert choose_threads(small, config) == 1
    conv = build_vae(784, Likelihood.uniform("gaussian", 784, 0.1), "conv", 8,
                     image_shape=(1, 28, 28))
    assert macs_per_row(conv) * config.batch_size > SINGLE_THREAD_MACS
    with train_threads(2):
        assert choose_threads(conv, config) == 2
        with train_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
