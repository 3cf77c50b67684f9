"""Thresholds calibrated on held-out *normal* scores, and p-values against them.

Score convention everywhere: higher = more anomalous. A threshold t for target false-positive
rate alpha is the (1 - alpha) empirical quantile of the calibration scores; a score is flagged
when it is strictly greater than t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anomaly.bundle.schema import ThresholdInfo, ThresholdPoint

STANDARD_FPRS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)


def threshold_for_fpr(calibration: np.ndarray, fpr: float) -> float:
    """The (1 - fpr) quantile of the calibration scores ('higher' interpolation, so at most
    a fraction ``fpr`` of calibration scores lie strictly above it)."""
    if not 0 < fpr < 1:
        raise ValueError(f"target FPR must be in (0, 1), got {fpr}")
    return float(np.quantile(np.asarray(calibration, dtype=np.float64), 1 - fpr,
                             method="higher"))


def bootstrap_fpr_interval(calibration: np.ndarray, fpr: float, rng: np.random.Generator,
                           n_boot: int = 1000, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the false-positive rate that calibrating at ``fpr``
    gives on new normal data.

    The whole procedure is resampled: each bootstrap sample of the calibration scores yields
    its own threshold, whose exceedance rate is measured on the original sample (standing in
    for the population). This captures the dominant uncertainty, that the threshold is itself
    a noisy quantile of few tail scores, which a bootstrap at a fixed threshold misses.
    """
    cal = np.sort(np.asarray(calibration, dtype=np.float64))  # (N,)
    n = cal.size
    chunk = max(1, min(n_boot, 4_000_000 // max(n, 1)))  # bound memory at ~32 MB of indices
    rates = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        resampled = np.sort(cal[rng.integers(0, n, size=(stop - start, n))], axis=1)
        thresholds = np.quantile(resampled, 1 - fpr, axis=1, method="higher")  # (chunk,)
        rates[start:stop] = 1.0 - np.searchsorted(cal, thresholds, side="right") / n
    lo, hi = np.quantile(rates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def calibrate(calibration: np.ndarray, target_fpr: float, rng: np.random.Generator,
              seed: int, fprs: Sequence[float] = STANDARD_FPRS) -> ThresholdInfo:
    """Everything the bundle stores about thresholds for these calibration scores."""
    cal = np.sort(np.asarray(calibration, dtype=np.float64))
    if cal.size == 0 or not np.all(np.isfinite(cal)):
        raise ValueError("calibration needs a non-empty set of finite scores")
    value = threshold_for_fpr(cal, target_fpr)
    return ThresholdInfo(
        target_fpr=target_fpr,
        value=value,
        fpr_estimate=float(np.mean(cal > value)),
        fpr_ci=bootstrap_fpr_interval(cal, target_fpr, rng),
        table=[ThresholdPoint(fpr=a, threshold=threshold_for_fpr(cal, a))
               for a in sorted({*fprs, target_fpr})],
        calibration_size=int(cal.size),
        calibration_seed=seed,
    )


def p_values(scores: np.ndarray, calibration_sorted: np.ndarray) -> np.ndarray:
    """Conformal p-value of each score: (1 + #{calibration >= s}) / (n + 1).

    Uniform on (0, 1] for normal data, small for anomalies, comparable across models.
    ``calibration_sorted`` must be sorted ascending.
    """
    n = calibration_sorted.size
    at_least = n - np.searchsorted(calibration_sorted, scores, side="left")
    return (1.0 + at_least) / (n + 1.0)


@dataclass(frozen=True)
class F1Threshold:
    threshold: float
    f1: float
    precision: float
    recall: float


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray) -> F1Threshold:
    """The threshold (flag when score > t) that maximises F1 on labelled data."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if y.sum() == 0:
        raise ValueError("F1-optimal threshold needs at least one labelled anomaly")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # flag the top k, k at tie ends
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / y.sum()
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    k = last[best]
    t = float((s[k] + s[k + 1]) / 2) if k + 1 < s.size else float(s[k] - 1e-12)
    return F1Threshold(t, float(f1[best]), float(precision[best]), float(recall[best]))
