"""The graphs a bundle ships and the scores they give: export (float32, or int8 with
``precision="int8"``), then rows scored by those very graphs, with the noise the bundle will
use by default, so the threshold is calibrated on the scores the bundle will produce.

Models that are never shipped (cross-fitting's fold models) are scored by
:func:`score_unexported` instead: the module the graphs are exported from, run in torch with
the same noise, so that a fold costs no export (~3 s per graph, most of a small table's
training time)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from anomaly.bundle import ThresholdInfo
from anomaly.inference import Graph, error_at_threshold, score_se
from anomaly.inference.noise import DEFAULT_SEED, latent_noise
from training.config import TrainConfig
from training.export import ExportedGraphs, export_graphs
from training.scoring_graph import ScoringGraph
from training.vae import VAE


def export_for_bundle(model: VAE, reference: nn.Module | None, x_fit: np.ndarray,
                      config: TrainConfig, kl: bool = False,
                      latent_prior: nn.Module | None = None) -> ExportedGraphs:
    """Both graphs of a fitted model; int8 ones are calibrated on ``x_fit``, rows the model
    was fitted on (never the calibration rows: their scores must stay exchangeable with new
    normal data)."""
    graphs = export_graphs(model, reference, kl=kl, latent_prior=latent_prior)
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


#: Rows per torch call in :func:`score_unexported`.
TORCH_CHUNK = 4096


def score_unexported(model: VAE, reference: nn.Module | None, x: np.ndarray,
                     config: TrainConfig, kl: bool = False,
                     latent_prior: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`score_rows` for a float32 model that is not exported: the score-only
    :class:`ScoringGraph` in torch, the same noise as the graphs get (equal to the exported
    graph's scores to float32 rounding, tests/training/test_export_parity.py)."""
    if config.precision != "fp32":
        raise ValueError("only float32 models are scored without export")
    ref = copy.deepcopy(reference).cpu().eval() if reference is not None else None
    prior = copy.deepcopy(latent_prior).cpu().eval() if latent_prior is not None else None
    module = ScoringGraph(copy.deepcopy(model).cpu().eval(), ref, explain=False, kl=kl,
                          latent_prior=prior).eval()
    scores, weights = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], TORCH_CHUNK):
            xb = np.ascontiguousarray(x[start:start + TORCH_CHUNK], dtype=np.float32)
            eps = latent_noise(DEFAULT_SEED, xb.shape[0], config.mc_samples,
                               model.latent_dim, config.noise)  # (L, B, d_z)
            score, log_w = module(torch.from_numpy(xb),
                                  torch.tensor(eps))  # a copy: the cached noise is read-only
            scores.append(score.numpy())
            weights.append(log_w.numpy())  # (L, B)
    log_w_all = np.concatenate(weights, axis=1)
    return (np.concatenate(scores).astype(np.float64),
            score_se(log_w_all, config.noise))


def with_mc_error(threshold: ThresholdInfo, calibration: np.ndarray, se: np.ndarray,
                  config: TrainConfig) -> ThresholdInfo:
    """The threshold with the Monte Carlo error of the calibration scores near it recorded."""
    info = error_at_threshold(calibration, se, threshold.value, config.target_fpr,
                              config.mc_samples, config.noise)
    return threshold.model_copy(update={"mc_error": info})
