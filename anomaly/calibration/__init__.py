"""Calibration and measurement of scores: thresholds and conformal p-values from held-out
normal scores (``threshold``), detection metrics on labelled scores (``metrics``)."""

from anomaly.calibration.metrics import ThresholdReport, at_threshold, auprc, auroc, roc_curve
from anomaly.calibration.threshold import (
    STANDARD_FPRS,
    F1Threshold,
    PValues,
    calibrate,
    f1_optimal_threshold,
    p_values,
    threshold_for_fpr,
)

__all__ = ["STANDARD_FPRS", "F1Threshold", "PValues", "ThresholdReport", "at_threshold",
           "auprc", "auroc", "calibrate", "f1_optimal_threshold", "p_values", "roc_curve",
           "threshold_for_fpr"]
