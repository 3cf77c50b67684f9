"""How noisy a Monte Carlo score is: its standard error, from the L draws that made it.

The score is ``-log((1/L) sum_l w_l) (+ log p_ref)`` with ``w_l = p(x | z_l)``, the mean of
the per-draw likelihoods in log space. By the delta method the standard error of
``log mean(w)`` is ``sd(w) / (sqrt(L) mean(w))``, with ``sd`` the sample standard deviation
of the independent units: each draw for ``iid`` noise, each antithetic pair's mean for
``antithetic`` (an odd L's last, unpaired draw counts in the score, not in its error). For
``sobol`` points the draws are not independent and one scrambled sequence carries no
unbiased estimate of its own error; the iid formula is reported, an upper bound
(benchmarks/mc_noise.py measures by how much it overstates the spread over seeds).

Everything here is in nats and computed in log space (the weights are shifted by their
maximum before exponentiating), so scores of e^-10000 likelihoods have finite errors too.
"""

from __future__ import annotations

import numpy as np

from anomaly.bundle import McErrorInfo


def score_se(log_weights: np.ndarray, method: str = "iid") -> np.ndarray:
    """(L, B) per-draw log-likelihoods -> (B,) standard error of the score (nats); NaN when
    fewer than two independent units (L = 1, or one antithetic pair)."""
    lw = np.asarray(log_weights, dtype=np.float64)
    L, B = lw.shape
    group = 2 if method == "antithetic" else 1
    units = L // group
    if units < 2:
        return np.full(B, np.nan)
    w = np.exp(lw - lw.max(axis=0))  # (L, B) in (0, 1]
    u = w[: units * group]  # (units, B) unit means: written out, np.std costs 3x as much
    if group > 1:
        u = u.reshape(units, group, B).mean(axis=1)
    mean = u.sum(axis=0) / units  # (B,) > 0: the maximum draw has w = 1
    d = u - mean
    return np.sqrt((d * d).sum(axis=0) / (units - 1)) / (np.sqrt(units) * mean)


def error_at_threshold(scores: np.ndarray, se: np.ndarray, threshold: float,
                       target_fpr: float, mc_samples: int, noise: str) -> McErrorInfo | None:
    """:class:`~anomaly.bundle.McErrorInfo` for normal ``scores`` (N,) with standard errors
    ``se`` (N,) at ``threshold``; None when no finite error lies in the band (L = 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    if scores.size == 0:
        return None
    cut = np.quantile(scores, max(0.0, 1.0 - 2.0 * target_fpr))
    band = (scores >= cut) & np.isfinite(se)
    if not band.any():
        return None
    median = float(np.median(se[band]))
    lo, hi = (float(np.mean(scores > t)) for t in (threshold + median, threshold - median))
    return McErrorInfo(median_se=median, fpr_band=(lo, hi), n=int(band.sum()),
                       mc_samples=mc_samples, noise=noise)


def describe_error(info: McErrorInfo | None, target_fpr: float) -> str:
    """One line for ``anomaly info`` / ``anomaly evaluate``."""
    if info is None:
        return "not recorded (bundle from before scores had standard errors, or L = 1)"
    lo, hi = info.fpr_band
    return (f"{info.median_se:.3g} nats near the threshold (median of {info.n} normal scores, "
            f"L={info.mc_samples} {info.noise}); +-1 SE there spans FPR {lo:.4f}-{hi:.4f} "
            f"around the target {target_fpr:g}")
