"""Scoring on onnxruntime: the latent noise (``noise``), the session over the exported graph
(``graph``), and the :class:`Scorer` that adds preprocessing, thresholds and p-values."""

from anomaly.inference.graph import Graph, choose_providers
from anomaly.inference.noise import DEFAULT_SEED, latent_noise
from anomaly.inference.scorer import Explanation, Scorer, ScoreResult

__all__ = ["DEFAULT_SEED", "Explanation", "Graph", "ScoreResult", "Scorer", "choose_providers",
           "latent_noise"]
