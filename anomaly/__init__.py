"""vae-anomaly core: bundles, preprocessing, the onnxruntime scorer, thresholds and metrics.

Never imports torch, ``training`` or ``service``.
"""

from anomaly.bundle import Bundle, load_bundle, write_bundle
from anomaly.errors import (
    AnomalyError,
    AuthError,
    BundleError,
    InputError,
    ModelNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)
from anomaly.metrics import at_threshold, auprc, auroc, roc_curve
from anomaly.noise import DEFAULT_SEED, latent_noise
from anomaly.preprocessing import ImagePreprocessor, TabularPreprocessor
from anomaly.schema import SCHEMA_VERSION, Manifest
from anomaly.scorer import Graph, Scorer, ScoreResult
from anomaly.threshold import calibrate, f1_optimal_threshold, p_values, threshold_for_fpr

__all__ = [
    "DEFAULT_SEED",
    "SCHEMA_VERSION",
    "AnomalyError",
    "AuthError",
    "Bundle",
    "BundleError",
    "Graph",
    "ImagePreprocessor",
    "InputError",
    "Manifest",
    "ModelNotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "ScoreResult",
    "Scorer",
    "TabularPreprocessor",
    "at_threshold",
    "auprc",
    "auroc",
    "calibrate",
    "f1_optimal_threshold",
    "latent_noise",
    "load_bundle",
    "p_values",
    "roc_curve",
    "threshold_for_fpr",
    "write_bundle",
]
