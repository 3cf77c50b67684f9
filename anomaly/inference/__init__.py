"""Scoring on onnxruntime: the latent noise (``noise``), the sessions over the exported graphs
(``graph``), the Monte Carlo error of a score (``uncertainty``), the :class:`Scorer` that
adds preprocessing, thresholds and p-values, and pandas DataFrames in and out of it
(``frame``; pandas only when a frame is used)."""

from anomaly.inference.frame import frame_columns, read_bundle_schema, score_frame
from anomaly.inference.graph import Graph, choose_providers
from anomaly.inference.noise import DEFAULT_SEED, NOISE_METHODS, NoiseMethod, latent_noise
from anomaly.inference.scorer import Explanation, Scorer, ScoreResult
from anomaly.inference.uncertainty import describe_error, error_at_threshold, score_se

__all__ = ["DEFAULT_SEED", "NOISE_METHODS", "Explanation", "Graph", "NoiseMethod",
           "ScoreResult", "Scorer", "choose_providers", "describe_error", "error_at_threshold",
           "frame_columns", "latent_noise", "read_bundle_schema", "score_frame", "score_se"]
