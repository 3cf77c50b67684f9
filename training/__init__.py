"""vae-anomaly training: fit VAEs on normal data and export self-contained bundles.

Exports resolve lazily (PEP 562) so that ``anomaly --help`` and ``anomaly score``, which load
``training.cli`` as a plugin, do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "training.config",
    "FitResult": "training.trainer",
    "fit": "training.trainer",
    "TrainReport": "training.pipeline",
    "train_tabular": "training.pipeline",
    "train_images": "training.pipeline",
    "tabular_config": "training.pipeline",
    "image_config": "training.pipeline",
    "VAE": "training.vae",
    "ReconstructionProbability": "training.vae",
    "build_vae": "training.vae",
    "Likelihood": "training.likelihood",
    "export_onnx": "training.export",
    "export_graphs": "training.export",
    "ExportedGraphs": "training.export",
    "ScoringGraph": "training.scoring_graph",
    "quantize_graphs": "training.quantize",
    "load_image_folder": "training.datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
