"""How the normal rows are divided between fitting, early stopping and calibration.

A threshold keeps its promised false-positive rate only if the calibration scores are
exchangeable with the scores of future normal rows: no calibration row may have been fitted
on *or used to choose the model* (early stopping picks an epoch, so its rows are used). Two
ways, chosen from the number of rows and the target FPR alone:

* ``holdout`` (enough rows): three disjoint parts, fit 70% / early stopping 10% (at most
  :data:`MAX_VAL_ROWS`) / calibration ``holdout_fraction`` (20%), when the calibration
  part can support the target (n_cal + 1 >= 1 / alpha, see
  :mod:`anomaly.calibration.threshold`). The calibration part
  is then trimmed (by at most half, the trimmed rows go to fitting) to the size whose
  conformal rank has an expected FPR nearest the target (:func:`calibration_size`): the rank
  is an integer, so 25 scores at alpha 0.05 can only promise 1/26 = 0.038 on average, while
  19 promise exactly 0.05;
* ``cross_fit`` (fewer rows): K folds; each fold's rows are scored by a model fitted on the
  other folds only, so every row gets an out-of-fold calibration score, and the first fold's
  model is the one shipped. No early stopping: a few dozen validation rows cannot pick
  an epoch (on 50-row tables it stopped at the end of the KL warm-up, AUROC 0.53), so every
  model trains for a fixed number of optimiser steps (:data:`MIN_STEPS` at least; 0.89 at
  200 steps, 0.95 at 800 on the same table). Why a fold's model and not one fitted on every
  row: the K fold models are alike in law (the same number of rows, the same training), so a
  new normal row's score under the shipped one is distributed as an out-of-fold score is, and
  the pooled scores keep the threshold's promise; a model fitted on a fifth more rows scores
  new normal rows lower than the fold models scored theirs, and its FPR ran under the target
  (lympho at 0.05: 0.035 over 20 splits, benchmarks/README.md).

Fewer than :data:`MIN_ROWS` normal rows cannot be split at all and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from anomaly.calibration.threshold import expected_fpr, threshold_rank
from anomaly.errors import InputError

#: The least number of normal rows a bundle can be trained and calibrated from.
MIN_ROWS = 10
#: Share of the rows that decide early stopping under ``holdout``.
VAL_FRACTION = 0.1
#: The most rows early stopping is decided on (the rest of a large table is fitted on): a
#: mean ELBO over 32,768 rows is exact to well under the epoch-to-epoch changes it ranks,
#: and validation runs once per epoch (``training.trainer.EPOCH_ROWS`` rows of fitting).
MAX_VAL_ROWS = 1 << 15
#: Folds under ``cross_fit``.
FOLDS = 5
#: Least optimiser steps of each model under ``cross_fit``.
MIN_STEPS = 800


@dataclass(frozen=True)
class SplitPlan:
    """Row indices (into the n normal rows) for one training run."""

    method: Literal["holdout", "cross_fit"]
    n: int
    train: np.ndarray  # the shipped model's rows: holdout: fitted on; cross_fit: fold 0's
    val: np.ndarray  # holdout: early stopping; cross_fit: = train (no early stopping)
    cal: np.ndarray  # holdout: calibration rows; cross_fit: every row (out of fold)
    #: cross_fit: (fit rows, out-of-fold rows) of each fold
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def plan_splits(n: int, holdout_fraction: float, target_fpr: float, seed: int,
                folds: int = FOLDS) -> SplitPlan:
    """The split for n normal rows (seeded, reproducible)."""
    if n < MIN_ROWS:
        raise InputError(f"only {n} normal rows: need at least {MIN_ROWS} to train and "
                         "calibrate a model; give more data")
    if not 0 < holdout_fraction < 1:
        raise InputError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_cal = round(n * holdout_fraction)
    n_val = min(max(round(n * VAL_FRACTION), 1), MAX_VAL_ROWS)
    if n_cal + 1 >= 1 / target_fpr and n - n_cal - n_val >= 2:
        n_cal = calibration_size(n_cal, target_fpr)
        cal, val, train = perm[:n_cal], perm[n_cal:n_cal + n_val], perm[n_cal + n_val:]
        return SplitPlan("holdout", n, np.sort(train), np.sort(val), np.sort(cal))
    every = np.arange(n)
    parts = np.array_split(perm, min(folds, n))
    plan = [(np.sort(np.concatenate([p for j, p in enumerate(parts) if j != k])),
             np.sort(out_of_fold)) for k, out_of_fold in enumerate(parts)]
    return SplitPlan("cross_fit", n, plan[0][0], plan[0][0], every, plan)


def calibration_size(n_cal: int, target_fpr: float) -> int:
    """The number of calibration scores, at most ``n_cal`` and at least half of it, whose
    conformal threshold has the expected FPR nearest ``target_fpr`` from below (the largest
    such size on ties): (n + 1) alpha an integer makes it exactly alpha. Fewer scores widen
    the FPR's interval a little; more, at the wrong size, shift its mean (n_cal 25 at 0.05:
    0.038; 19: 0.050)."""
    def promised(m: int) -> float:
        return expected_fpr(m, threshold_rank(m, target_fpr))

    sizes = [m for m in range(max(-(-n_cal // 2), 1), n_cal + 1)
             if promised(m) <= target_fpr + 1e-12]  # too few scores promise more than alpha
    return max(sizes, key=lambda m: (promised(m), m), default=n_cal)


def fixed_epochs(n: int, batch_size: int, epochs: int) -> int:
    """Epochs for a model trained without early stopping on n rows: at least ``epochs``, and
    enough for :data:`MIN_STEPS` optimiser steps."""
    steps_per_epoch = -(-n // batch_size)
    return max(epochs, -(-MIN_STEPS // steps_per_epoch))
