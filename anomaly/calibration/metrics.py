"""Detection metrics on (score, label) pairs, label 1 = anomaly, higher score = more anomalous.

Plain numpy so the core needs no scikit-learn; the tests check them against scikit-learn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if y.all() or not y.any():
        raise ValueError("need both normal (0) and anomalous (1) labels to evaluate")
    return s, y


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_a)) + 1]
    ends = np.r_[starts[1:], a.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    ranks = _rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: sum over thresholds of precision * recall increment."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) points from (0, 0) to (1, 1), one per distinct score."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tpr = np.r_[0.0, np.cumsum(y)[last] / y.sum()]
    fpr = np.r_[0.0, np.cumsum(~y)[last] / (~y).sum()]
    return fpr, tpr


@dataclass(frozen=True)
class ThresholdReport:
    """Confusion-matrix summary of flagging ``score > threshold``."""

    threshold: float
    precision: float
    recall: float
    f1: float
    fpr: float
    flagged: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> ThresholdReport:
    s, y = _check(scores, labels)
    flag = s > threshold
    tp = int((flag & y).sum())
    fp = int((flag & ~y).sum())
    precision = tp / max(int(flag.sum()), 1)
    recall = tp / int(y.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ThresholdReport(threshold, precision, recall, f1, fp / int((~y).sum()), int(flag.sum()))
