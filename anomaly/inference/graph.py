"""The exported scoring graph on onnxruntime: preprocessed ``x`` in, Monte Carlo scores out.

The one place that picks execution providers, draws the latent noise and calls the model,
shared by scoring, calibration at training time and the service."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomaly.errors import BundleError, MissingExtraError
from anomaly.inference.noise import latent_noise

log = logging.getLogger(__name__)

#: Rows per graph call when a caller hands over more; bounds memory at L * B * D floats.
MAX_CHUNK = 1024


def onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError("scoring", "cpu",
                                "or 'vae-anomaly[gpu]' on a CUDA machine") from exc
    return ort


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """CUDA first when this onnxruntime build has it, CPU always last as the fallback.
    Requested providers that are not available are dropped with a warning."""
    available = onnxruntime().get_available_providers()
    wanted = list(requested) if requested else ["CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = [p for p in wanted if p in available]
    dropped = [p for p in wanted if p not in available]
    if dropped and requested:
        log.warning("execution provider(s) %s not available in this onnxruntime (%s); "
                    "falling back to %s", dropped, available, chosen or ["CPUExecutionProvider"])
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class Graph:
    """One onnxruntime session over a bundle's ``model.onnx`` (a path or its bytes)."""

    def __init__(self, model: Path | bytes, latent_dim: int,
                 providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None) -> None:
        ort = onnxruntime()
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        try:
            self._session = ort.InferenceSession(source, options,
                                                 providers=choose_providers(providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"onnxruntime cannot load the model graph: {exc}") from exc
        #: the providers the session runs on, in order; the first does the work
        self.providers: list[str] = list(self._session.get_providers())
        self.provider: str = self.providers[0]
        self.latent_dim = latent_dim
        self.input_dim = int(self._session.get_inputs()[0].shape[1])

    def run(self, x: np.ndarray, seeds: int | Sequence[int], mc_samples: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x (B, D) float32 -> score (B,), feature_scores (B, D), reconstruction (B, D)."""
        B = x.shape[0]
        per_row = not isinstance(seeds, int | np.integer)
        parts = []
        for start in range(0, B, MAX_CHUNK):
            stop = min(start + MAX_CHUNK, B)
            chunk_seeds: int | list[int] = (
                [int(s) for s in seeds[start:stop]] if per_row  # type: ignore[index]
                else int(seeds))  # type: ignore[arg-type]
            eps = np.ascontiguousarray(
                latent_noise(chunk_seeds, stop - start, mc_samples, self.latent_dim))
            parts.append(self._session.run(None, {"x": x[start:stop], "eps": eps}))
        if len(parts) == 1:
            score, feature_scores, reconstruction = parts[0]
        else:
            score, feature_scores, reconstruction = (np.concatenate(p)
                                                     for p in zip(*parts, strict=True))
        return score, feature_scores, reconstruction
