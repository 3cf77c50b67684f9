"""Scoring on onnxruntime: the latent noise (``noise``), the session over the exported graph
(``graph``), the :class:`Scorer` that adds preprocessing, thresholds and p-values, and
pandas DataFrames in and out of it (``frame``; pandas only when a frame is used)."""

from anomaly.inference.frame import frame_columns, read_bundle_schema, score_frame
from anomaly.inference.graph import Graph, choose_providers
from anomaly.inference.noise import DEFAULT_SEED, latent_noise
from anomaly.inference.scorer import Scorer, ScoreResult

__all__ = ["DEFAULT_SEED", "Graph", "ScoreResult", "Scorer", "choose_providers",
           "frame_columns", "latent_noise", "read_bundle_schema", "score_frame"]
