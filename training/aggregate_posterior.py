"""How atypical a row's latent code is among the codes of the normal rows the model was fitted
on: the latent term of the ``aggregate_free_energy`` tabular score, the default
(``--latent-codes``).

The ``free_energy`` score adds KL(q(z|x) || p(z)) to -log RP(x): how far x's posterior lies
from the prior N(0, I). But the codes of normal rows do not fill the prior; they form the
*aggregate posterior* q(z) = (1/N) sum_i q(z | x_i), with holes and clusters of its own, and an
anomaly whose code lands in a hole of q(z) looks normal to a prior that is broad there. This
module measures x against q(z) instead, as a kernel density over the fitted rows' codes:

    D(x) = -log (1/N) sum_i t_nu(mu(x); mu_i, sigma_i^2 + s^2) - H(q(z|x))   (nats)

with (mu_i, sigma_i^2) the posteriors of up to ``latent_codes`` fitted rows (a seeded
subset), s^2 the fitted rows' mean posterior variance per latent dimension (each kernel widened
by the spread a code typically has, where the exact KL bound would use x's own sigma^2: the
same AUROC on ODDS, 0.9175 vs 0.9182, and a (B, N) matrix product instead of a (B, N, d_z)
tensor), t_nu the Student-t density with :data:`KERNEL_DOF` degrees of freedom and those
scales, and H(q(z|x)) = sum log sigma + d_z/2 log(2 pi e), the posterior's entropy, so that a
sharp posterior in a sparse region costs more than a broad one.

**Why Student-t kernels, not Gaussian ones.** With Gaussian kernels D grows with the square of
a code's distance from the nearest fitted code, so a benign row whose code lies just beyond
them can outscore every calibration row: on ``make demo``'s breast-cancer split 5 of 89 normal
test rows passed a threshold that promised at most 3 (their w D 180-320 nats against a median
of 17), and 2 of 5 training seeds gave a test FPR outside the reported interval. t kernels grow
with the log of the distance; the same split gives 2, 0, 3, 1, 1 of 89 over seeds 0-4 (0-3
promised), the default score 2, 0, 3, 0, 1. The ODDS mean AUROC is unchanged (0.9189 with
nu = 3 against 0.9176 Gaussian, lab, seeds 0-2; benchmarks/README.md).

The score is -log RP(x) + w D(x) with w = IQR(-log RP) / IQR(D) over the fitted rows (each row's
D without its own kernel): the two terms measure different things on scales that differ by
table (D features against d_z latent dimensions), and w gives each the same weight, in the
reconstruction term's units. Decided from normal rows alone. On the eleven ODDS tables
(benchmarks/README.md, "The latent code against the normal rows' codes") the mean test AUROC
rose 0.906 -> 0.917 (seeds 0-2) and 0.899 -> 0.910 (seeds 3-5).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from training.vae import VAE

#: Fitted rows whose D(x) sets the weight; more add nothing to an IQR but (rows x codes) work.
STATS_ROWS = 8192
#: Rows per encoder pass and per (rows, codes) block while fitting.
_CHUNK = 4096
#: Degrees of freedom of the Student-t kernels. 3: between the Cauchy kernel (1) and the
#: Gaussian limit; lab, ODDS mean AUROC seeds 0-2: 0.9177 (1), 0.9189 (3), 0.9187 (10),
#: 0.9176 (Gaussian); nasty tables 0.813, 0.806, 0.800, 0.797 (benchmarks/README.md).
KERNEL_DOF = 3.0


class AggregatePosterior(nn.Module):
    """mu, log sigma (B, d_z) of q(z|x) -> w D(x) (B,), see the module docstring.

    One (B, 2 d_z) @ (2 d_z, N) product: with q_i = sum_k (mu_k - m_ik)^2 / v_ik the squared
    scaled distance to code i, u_i = 1 + q_i / nu is mu^2 . (1/(nu v_i)) + mu . (-2 m_i/(nu v_i))
    + (1 + sum m_i^2/(nu v_i)), so the matrix product and its bias give u directly, and
    log t_nu = log_norm_i - (nu + d_z)/2 log u_i: a clip, a log, a scale and a shift over
    (B, N) after the product and its bias, two passes fewer than dividing by nu and adding 1
    in the graph (``benchmarks/latent_term.py`` measures the cost)."""

    quad_lin: torch.Tensor  # (2 d_z, N)
    offset: torch.Tensor  # (N,): 1 + sum m_i^2 / (nu v_i)
    log_norm: torch.Tensor  # (N,): the kernels' log normalisers, less log N
    weight: torch.Tensor  # ()

    def __init__(self, codes: torch.Tensor, variances: torch.Tensor, weight: float,
                 dof: float = KERNEL_DOF) -> None:
        super().__init__()
        n, d = codes.shape  # (N, d_z) each
        self.dof = float(dof)
        v = variances.double()
        m = codes.double()
        nu = self.dof
        self.register_buffer("quad_lin", (torch.cat([1.0 / v, -2.0 * m / v], dim=1) / nu).T
                             .float().contiguous())
        self.register_buffer("offset", (1.0 + (m * m / v).sum(1) / nu).float())
        t_const = (math.lgamma((nu + d) / 2) - math.lgamma(nu / 2)
                   - 0.5 * d * math.log(nu * math.pi))
        self.register_buffer("log_norm", (-0.5 * torch.log(v).sum(1) + t_const - math.log(n))
                             .float())
        self.register_buffer("weight", torch.tensor(float(weight)))
        self.latent_dim = d
        self.half_power = 0.5 * (nu + d)
        self.entropy_const = 0.5 * d * math.log(2 * math.pi * math.e)

    def log_kernels(self, mu: torch.Tensor) -> torch.Tensor:
        """log (1/N) t_nu(mu; m_i, v_i) (B, N) for codes mu (B, d_z)."""
        u = torch.cat([mu * mu, mu], dim=1) @ self.quad_lin + self.offset  # (B, N): 1 + q/nu
        # u >= 1 exactly; the expanded form can dip below by rounding
        return self.log_norm - self.half_power * torch.log(torch.clamp(u, min=1.0))

    def divergence(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        """D(x) (B,) in nats, unweighted."""
        entropy = log_sigma.sum(-1) + self.entropy_const  # (B,)
        return -torch.logsumexp(self.log_kernels(mu), dim=1) - entropy

    def forward(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        return self.weight * self.divergence(mu, log_sigma)

    def describe(self) -> dict[str, float | int]:
        return {"codes": int(self.offset.shape[0]), "weight": float(self.weight),
                "kernel_dof": self.dof}


@torch.no_grad()
def posteriors(model: VAE, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """mu, log sigma (N, d_z) of q(z|x) for rows ``x`` (N, D), on the CPU."""
    model = model.eval()
    device = next(model.parameters()).device
    mus, log_sigmas = [], []
    for start in range(0, x.shape[0], _CHUNK):
        xb = torch.as_tensor(x[start:start + _CHUNK], dtype=torch.float32, device=device)
        mu, logvar = model.encode(xb)
        mus.append(mu.cpu())
        log_sigmas.append(0.5 * logvar.cpu())
    return torch.cat(mus), torch.cat(log_sigmas)


def _iqr(values: np.ndarray) -> float:
    q1, q3 = np.percentile(values[np.isfinite(values)], [25, 75]) if np.isfinite(
        values).any() else (math.nan, math.nan)
    return float(q3 - q1)


def weight_rows(n: int, n_codes: int, seed: int) -> np.ndarray:
    """Indices (into the n fitted rows) whose D(x) and -log RP set the weight, the codes'
    rows first: a seeded permutation's first max(:data:`STATS_ROWS`, n_codes) rows."""
    return np.random.default_rng(seed).permutation(n)[:min(max(STATS_ROWS, n_codes), n)]


@torch.no_grad()
def fit_aggregate_posterior(model: VAE, x_fit: np.ndarray, rec_scores: np.ndarray,
                            n_codes: int, seed: int) -> AggregatePosterior:
    """The latent term for a model fitted on ``x_fit`` (N, D); ``rec_scores`` (N,) are those
    rows' -log RP (needed at :func:`weight_rows` only). Codes: up to ``n_codes`` rows, a
    subset drawn with ``seed``; the weight from the rows of :func:`weight_rows`, each row's D
    without its own kernel."""
    stats_idx = weight_rows(x_fit.shape[0], n_codes, seed)
    codes_idx = stats_idx[:min(n_codes, len(stats_idx))]
    mu, log_sigma = posteriors(model, x_fit[stats_idx])  # (S, d_z)
    var = torch.exp(2 * log_sigma.double())
    widened = var[: len(codes_idx)] + var.mean(0)  # (N_codes, d_z)
    prior = AggregatePosterior(mu[: len(codes_idx)], widened.float(), 1.0)
    divergence = []
    n = len(codes_idx)
    for start in range(0, len(stats_idx), _CHUNK):
        stop = min(start + _CHUNK, len(stats_idx))
        log_k = prior.log_kernels(mu[start:stop]).double() + math.log(n)  # (rows, N_codes)
        own = torch.arange(start, stop)
        is_code = own < n  # this row's own kernel is among the codes: leave it out
        log_k[is_code.nonzero().ravel(), own[is_code]] = -math.inf
        n_other = n - is_code.double()
        log_k = log_k - torch.log(n_other.clamp(min=1.0))[:, None]
        entropy = log_sigma[start:stop].double().sum(-1) + prior.entropy_const
        divergence.append(-torch.logsumexp(log_k, dim=1) - entropy)
    d = torch.cat(divergence).numpy()
    iqr_d, iqr_r = _iqr(d), _iqr(np.asarray(rec_scores, dtype=np.float64)[stats_idx])
    if len(codes_idx) < 2 or not math.isfinite(iqr_d) or iqr_d <= 1e-12:
        weight = 0.0  # codes without spread carry no ranking
    elif not math.isfinite(iqr_r) or iqr_r <= 1e-12:
        weight = 1.0  # nothing to match: the terms in plain nats
    else:
        weight = iqr_r / iqr_d
    prior.weight.fill_(weight)
    return prior
