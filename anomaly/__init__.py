"""vae-anomaly core: bundles, preprocessing, the onnxruntime scorer, calibration, batch
scoring and evaluation. Never imports torch, ``training`` or ``service``.

Layers, each importing only those below it (an import-linter contract holds the line):
``cli`` > ``evaluation`` > ``batch`` > ``inference`` > ``preprocessing`` | ``calibration`` >
``bundle``; ``errors``, ``plots``, ``progress`` and ``_fs`` serve them all.
"""

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

from anomaly.bundle import SCHEMA_VERSION, Bundle, Manifest, load_bundle, write_bundle
from anomaly.calibration import (
    at_threshold,
    auprc,
    auroc,
    calibrate,
    f1_optimal_threshold,
    p_values,
    roc_curve,
    threshold_for_fpr,
)
from anomaly.errors import (
    AnomalyError,
    BundleError,
    InputError,
    MissingExtraError,
    PayloadTooLargeError,
)
from anomaly.inference import (
    DEFAULT_SEED,
    Graph,
    Scorer,
    ScoreResult,
    latent_noise,
    read_bundle_schema,
)
from anomaly.preprocessing import ImagePreprocessor, TabularPreprocessor

if TYPE_CHECKING:
    from anomaly.batch import ScoreOptions, ScoreSummary, score_path
    from anomaly.evaluation import EvaluationReport, evaluate_path

#: Public names imported on first use: batch scoring (pyarrow's CSV machinery) and evaluation
#: (matplotlib) are not what a scoring process needs, and importing them with the package
#: cost the service 0.5 s of start-up and matplotlib's memory.
_LAZY = {"ScoreOptions": "anomaly.batch", "ScoreSummary": "anomaly.batch",
         "score_path": "anomaly.batch", "EvaluationReport": "anomaly.evaluation",
         "evaluate_path": "anomaly.evaluation"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anomaly' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


try:
    __version__ = importlib.metadata.version("vae-anomaly")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare source checkout
    __version__ = "unknown"

__all__ = [
    "DEFAULT_SEED",
    "SCHEMA_VERSION",
    "AnomalyError",
    "Bundle",
    "BundleError",
    "EvaluationReport",
    "Graph",
    "ImagePreprocessor",
    "InputError",
    "Manifest",
    "MissingExtraError",
    "PayloadTooLargeError",
    "ScoreOptions",
    "ScoreResult",
    "ScoreSummary",
    "Scorer",
    "TabularPreprocessor",
    "__version__",
    "at_threshold",
    "auprc",
    "auroc",
    "calibrate",
    "evaluate_path",
    "f1_optimal_threshold",
    "latent_noise",
    "load_bundle",
    "p_values",
    "read_bundle_schema",
    "roc_curve",
    "score_path",
    "threshold_for_fpr",
    "write_bundle",
]
