"""The model bundle: its typed manifest (``schema``) and how it is read and written (``io``).
The bottom layer of ``anomaly``: everything else builds on what a bundle holds."""

from anomaly.bundle.io import MANIFEST, Bundle, load_bundle, migrate, sha256_file, write_bundle
from anomaly.bundle.schema import (
    MISSING_CATEGORY,
    SCHEMA_VERSION,
    UNKNOWN_CATEGORY,
    BundleFiles,
    CategoricalColumn,
    Column,
    ImageInput,
    InputSchema,
    Manifest,
    McErrorInfo,
    ModelInfo,
    NumericColumn,
    ScoreKind,
    TabularInput,
    ThresholdInfo,
    ThresholdPoint,
    TrainingSummary,
)

__all__ = ["MANIFEST", "MISSING_CATEGORY", "SCHEMA_VERSION", "UNKNOWN_CATEGORY", "Bundle",
           "BundleFiles", "CategoricalColumn", "Column", "ImageInput", "InputSchema", "Manifest",
           "McErrorInfo", "ModelInfo", "NumericColumn", "ScoreKind", "TabularInput",
           "ThresholdInfo", "ThresholdPoint", "TrainingSummary", "load_bundle", "migrate",
           "sha256_file", "write_bundle"]
