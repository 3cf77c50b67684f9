"""The latent term of the tabular score: a row's code against the fitted rows' codes.

Checked against the formula written out in numpy, through the exported graph and the
unexported fold-model path, and end to end: an anomaly whose code falls between the normal
rows' clusters, where the prior N(0, I) is dense, is found by the aggregate term."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import gammaln, logsumexp

from anomaly.calibration import auroc
from anomaly.inference import Scorer
from training.aggregate_posterior import (
    KERNEL_DOF,
    AggregatePosterior,
    fit_aggregate_posterior,
    posteriors,
)
from training.bundle_graphs import score_rows, score_unexported
from training.config import TrainConfig
from training.export import export_graphs
from training.likelihood import Likelihood
from training.pipeline import tabular_config, train_tabular
from training.vae import ReconstructionProbability, build_vae


def _divergence(mu: np.ndarray, log_sigma: np.ndarray, codes: np.ndarray,
                var: np.ndarray, nu: float = KERNEL_DOF) -> np.ndarray:
    """-log mean_i t_nu(mu; codes_i, var_i) - H(N(mu, sigma^2)), written out, (B,): the
    multivariate Student-t density with diagonal scales var_i."""
    d = mu.shape[1]
    q = ((mu[:, None, :] - codes[None]) ** 2 / var[None]).sum(-1)  # (B, N)
    log_k = (gammaln((nu + d) / 2) - gammaln(nu / 2) - 0.5 * d * math.log(nu * math.pi)
             - 0.5 * np.log(var).sum(-1)[None] - 0.5 * (nu + d) * np.log1p(q / nu))
    entropy = log_sigma.sum(-1) + 0.5 * mu.shape[1] * math.log(2 * math.pi * math.e)
    return -(logsumexp(log_k, axis=1) - math.log(codes.shape[0])) - entropy


@pytest.mark.parametrize("nu", [1.0, KERNEL_DOF, 30.0])
def test_divergence_is_the_kernel_density_formula(nu: float) -> None:
    rng = np.random.default_rng(0)
    codes, var = rng.normal(size=(50, 3)), rng.uniform(0.05, 2.0, size=(50, 3))
    mu, log_sigma = rng.normal(size=(7, 3)) * 2, rng.normal(size=(7, 3)) * 0.3
    mu[0] = codes[4]  # on a code: q = 0 exactly, which the expanded product can miss
    prior = AggregatePosterior(torch.tensor(codes, dtype=torch.float32),
                               torch.tensor(var, dtype=torch.float32), weight=2.5, dof=nu)
    got = prior(torch.tensor(mu, dtype=torch.float32),
                torch.tensor(log_sigma, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, 2.5 * _divergence(mu, log_sigma, codes, var, nu),
                               rtol=1e-4, atol=1e-3)


def test_far_codes_cost_the_log_of_their_distance_not_its_square() -> None:
    """A code 10x and 100x farther from the only fitted code than the kernel's scale: the
    Gaussian kernel's -log density grows 100-fold, the t kernel's by (nu + d)/2 log(100)."""
    prior = AggregatePosterior(torch.zeros(1, 2), torch.ones(1, 2), weight=1.0)
    mu = torch.tensor([[10.0, 0.0], [100.0, 0.0]])
    d = prior.divergence(mu, torch.zeros(2, 2)).numpy()
    assert d[1] - d[0] == pytest.approx(0.5 * (KERNEL_DOF + 2) * math.log(
        (1 + 1e4 / KERNEL_DOF) / (1 + 1e2 / KERNEL_DOF)), rel=1e-4)
    assert d[1] - d[0] < 25  # a Gaussian kernel: 0.5 (100^2 - 10^2) = 4950 nats


def _model(d_in: int = 5, latent: int = 3) -> torch.nn.Module:
    torch.manual_seed(1)
    return build_vae(d_in, Likelihood.uniform("gaussian", d_in, 1e-3), "mlp", latent, (16, 8),
                     encoder_clip=10.0).eval()


def test_weight_matches_the_spreads_of_the_two_terms_without_each_rows_own_kernel() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    vae = _model()
    rec = rng.gamma(2.0, 3.0, size=120)
    prior = fit_aggregate_posterior(vae, x, rec, n_codes=40, seed=7)
    assert prior.describe()["codes"] == 40
    order = np.random.default_rng(7).permutation(120)
    mu, log_sigma = (t.numpy().astype(np.float64) for t in posteriors(vae, x[order]))
    var = np.exp(2 * log_sigma)
    codes, widened = mu[:40], var[:40] + var.mean(0)
    d = np.empty(120)
    for i in range(120):
        keep = np.arange(40) != i  # rows 0..39 of the order are the codes themselves
        d[i] = _divergence(mu[i:i + 1], log_sigma[i:i + 1], codes[keep], widened[keep])[0]
    q = np.percentile
    want = (q(rec[order], 75) - q(rec[order], 25)) / (q(d, 75) - q(d, 25))
    assert float(prior.weight) == pytest.approx(want, rel=1e-4)


def test_codes_without_spread_add_nothing() -> None:
    x = np.zeros((30, 5), dtype=np.float32)  # every row the same code
    prior = fit_aggregate_posterior(_model(), x, np.arange(30.0), n_codes=16, seed=0)
    assert float(prior.weight) == 0.0


def test_exported_and_fold_model_scores_equal_the_plain_graph() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    vae = _model()
    prior = fit_aggregate_posterior(vae, x, rng.gamma(2.0, 2.0, 64), n_codes=32, seed=0)
    config = TrainConfig(latent_dim=3, mc_samples=8)
    exported, _ = score_rows(export_graphs(vae, kl=True, latent_prior=prior), x, config)
    unexported, _ = score_unexported(vae, None, x, config, kl=True, latent_prior=prior)
    np.testing.assert_allclose(unexported, exported, rtol=1e-5, atol=1e-4)
    from anomaly.inference.noise import DEFAULT_SEED, latent_noise

    eps = torch.tensor(latent_noise(DEFAULT_SEED, 64, 8, 3, "iid"))
    with torch.no_grad():
        plain = ReconstructionProbability(vae, kl=True, latent_prior=prior)(
            torch.from_numpy(x), eps)[0].numpy()
        prior_only = ReconstructionProbability(vae, kl=True)(torch.from_numpy(x), eps)[0]
    np.testing.assert_allclose(exported, plain, rtol=1e-5, atol=1e-4)
    assert not np.allclose(exported, prior_only.numpy())  # the term is really there


def _two_clusters(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows on two far-apart clusters (4 columns, correlated within each)."""
    side = rng.integers(0, 2, n)[:, None] * 2 - 1  # (n, 1) +-1
    base = rng.normal(size=(n, 1))
    return side * 4.0 + base * np.array([[1.0, 0.8, -0.6, 0.5]]) + 0.3 * rng.normal(size=(n, 4))


def _scores(tmp_path: Path, name: str, train: np.ndarray, test: np.ndarray,
            latent_codes: int) -> tuple[str, np.ndarray]:
    cols = [f"c{j}" for j in range(train.shape[1])]
    config = tabular_config(seed=0, progress=False, epochs=60, latent_codes=latent_codes)
    report = train_tabular({c: train[:, j] for j, c in enumerate(cols)}, tmp_path / name,
                           name, config)
    scorer = Scorer(report.path)
    return (report.manifest.model.score,
            scorer.score_rows({c: test[:, j] for j, c in enumerate(cols)}).scores)


def test_a_row_between_the_normal_clusters_is_found(tmp_path: Path) -> None:
    """The midpoint of two clusters lies where N(0, I) is densest; the normal rows' codes
    leave a hole there. The bundle's score names its kind, and the aggregate term ranks the
    midpoint rows above the normal ones better than the prior's KL does."""
    rng = np.random.default_rng(0)
    train, normal = _two_clusters(rng, 800), _two_clusters(rng, 300)
    middle = rng.normal(size=(60, 1)) * np.array([[1.0, 0.8, -0.6, 0.5]]) \
        + 0.3 * rng.normal(size=(60, 4))  # the same shape, at side 0
    test = np.vstack([normal, middle])
    kind, aggregate = _scores(tmp_path, "aggregate", train, test, 1024)
    prior_kind, prior = _scores(tmp_path, "prior", train, test, 0)
    assert (kind, prior_kind) == ("aggregate_free_energy", "free_energy")
    labels = np.r_[np.zeros(300), np.ones(60)]
    a, p = auroc(aggregate, labels), auroc(prior, labels)
    assert a > 0.9 and a > p + 0.02, (a, p)
