"""The graphs a bundle ships and the scores they give: export (float32, or int8 with
``precision="int8"``), then rows scored by those very graphs, with the noise the bundle will
use by default, so the threshold is calibrated on the scores the bundle will produce."""

from __future__ import annotations

import numpy as np
from torch import nn

from anomaly.bundle import ThresholdInfo
from anomaly.inference import Graph, error_at_threshold, score_se
from anomaly.inference.noise import DEFAULT_SEED
from training.config import TrainConfig
from training.export import ExportedGraphs, export_graphs
from training.vae import VAE


def export_for_bundle(model: VAE, reference: nn.Module | None, x_fit: np.ndarray,
                      config: TrainConfig, kl: bool = False) -> ExportedGraphs:
    """Both graphs of a fitted model; int8 ones are calibrated on ``x_fit``, rows the model
    was fitted on (never the calibration rows: their scores must stay exchangeable with new
    normal data)."""
    graphs = export_graphs(model, reference, kl=kl)
    if config.precision == "int8":
        from training.quantize import quantize_graphs

        graphs = quantize_graphs(graphs, x_fit, config.latent_dim, config.mc_samples,
                                 config.noise)
    return graphs


def score_rows(graphs: ExportedGraphs, x: np.ndarray, config: TrainConfig
               ) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N,), their Monte Carlo standard errors (N,)) of rows ``x``, in row order."""
    graph = Graph(graphs.full, config.latent_dim, providers=["CPUExecutionProvider"],
                  score_model=graphs.score)
    score, log_w = graph.score_and_weights(x, DEFAULT_SEED, config.mc_samples, config.noise)
    assert log_w is not None  # every graph exported here has the per-draw output
    return score.astype(np.float64), score_se(log_w, config.noise)


def with_mc_error(threshold: ThresholdInfo, calibration: np.ndarray, se: np.ndarray,
                  config: TrainConfig) -> ThresholdInfo:
    """The threshold with the Monte Carlo error of the calibration scores near it recorded."""
    info = error_at_threshold(calibration, se, threshold.value, config.target_fpr,
                              config.mc_samples, config.noise)
    return threshold.model_copy(update={"mc_error": info})
