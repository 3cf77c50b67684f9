"""The graphs a bundle ships and the held-out scores they give: export (float32, or int8 with
``precision="int8"``), then the held-out normal rows scored by those very graphs, with the
noise the bundle will use by default, so the threshold is calibrated on the scores the
bundle will produce."""

from __future__ import annotations

import numpy as np
from torch import nn

from anomaly.bundle import ThresholdInfo
from anomaly.inference import Graph, error_at_threshold, score_se
from anomaly.inference.noise import DEFAULT_SEED
from training.config import TrainConfig
from training.export import ExportedGraphs, export_graphs
from training.vae import VAE


def export_and_score(model: VAE, reference: nn.Module | None, x_hold: np.ndarray,
                     config: TrainConfig) -> tuple[ExportedGraphs, np.ndarray, np.ndarray]:
    """(graphs, held-out scores sorted ascending (N,), their standard errors (N,) in the same
    order) for a fitted model."""
    graphs = export_graphs(model, reference)
    if config.precision == "int8":
        from training.quantize import quantize_graphs

        graphs = quantize_graphs(graphs, x_hold, config.latent_dim, config.mc_samples,
                                 config.noise)
    graph = Graph(graphs.full, config.latent_dim, providers=["CPUExecutionProvider"],
                  score_model=graphs.score)
    score, log_w = graph.score_and_weights(x_hold, DEFAULT_SEED, config.mc_samples,
                                           config.noise)
    assert log_w is not None  # every graph exported here has the per-draw output
    order = np.argsort(score, kind="stable")
    return graphs, score[order].astype(np.float64), score_se(log_w, config.noise)[order]


def with_mc_error(threshold: ThresholdInfo, calibration: np.ndarray, se: np.ndarray,
                  config: TrainConfig) -> ThresholdInfo:
    """The threshold with the Monte Carlo error of the held-out scores near it recorded."""
    info = error_at_threshold(calibration, se, threshold.value, config.target_fpr,
                              config.mc_samples, config.noise)
    return threshold.model_copy(update={"mc_error": info})
