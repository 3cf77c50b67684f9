"""Score with a bundle on onnxruntime: one graph call gives score, per-feature scores and the
reconstruction. No torch here; the scoring math lives in the exported graph.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anomaly.bundle import Bundle, load_bundle
from anomaly.errors import AnomalyError, BundleError, InputError
from anomaly.noise import DEFAULT_SEED, latent_noise
from anomaly.preprocessing import (
    DEFAULT_MAX_PIXELS,
    ImagePreprocessor,
    TabularPreprocessor,
    rows_to_columns,
)
from anomaly.schema import ImageInput, Manifest, TabularInput
from anomaly.threshold import p_values

log = logging.getLogger(__name__)

#: Rows per graph call when a caller hands over more; bounds memory at L * B * D floats.
MAX_CHUNK = 1024


@dataclass(frozen=True)
class ScoreResult:
    """Scores for B samples. Scores are -log reconstruction probability in nats (higher =
    more anomalous); ``feature_scores`` are the same per input feature (pixel, one-hot slot)."""

    scores: np.ndarray  # (B,)
    feature_scores: np.ndarray  # (B, D)
    reconstruction: np.ndarray  # (B, D)
    p_values: np.ndarray  # (B,)
    is_anomaly: np.ndarray  # (B,) bool
    threshold: float
    mc_samples: int

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AnomalyError("onnxruntime is not installed: pip install 'vae-anomaly[cpu]' "
                           "(or 'vae-anomaly[gpu]' on a CUDA machine)") from exc
    return onnxruntime


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """CUDA first when this onnxruntime build has it, CPU always last as the fallback.
    Requested providers that are not available are dropped with a warning."""
    available = _onnxruntime().get_available_providers()
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
    """The exported graph on onnxruntime: preprocessed x in, MC scores out. The one place
    that draws the latent noise and calls the model, shared by scoring and calibration."""

    def __init__(self, model: Path | bytes, latent_dim: int,
                 providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options,
                                                providers=choose_providers(providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"onnxruntime cannot load the model graph: {exc}") from exc
        self.provider: str = self.session.get_providers()[0]
        self.latent_dim = latent_dim
        self.input_dim = int(self.session.get_inputs()[0].shape[1])

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
            parts.append(self.session.run(None, {"x": x[start:stop], "eps": eps}))
        if len(parts) == 1:
            score, feature_scores, reconstruction = parts[0]
        else:
            score, feature_scores, reconstruction = (np.concatenate(p)
                                                     for p in zip(*parts, strict=True))
        return score, feature_scores, reconstruction


class Scorer:
    """An onnxruntime session over one bundle, plus its preprocessing and calibration."""

    def __init__(self, bundle: Bundle | str | os.PathLike[str],
                 providers: Sequence[str] | None = None, mc_samples: int | None = None,
                 intra_op_threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        manifest = self.bundle.manifest
        self.mc_samples = mc_samples or manifest.model.mc_samples
        if self.mc_samples < 1:
            raise InputError(f"mc_samples must be >= 1, got {self.mc_samples}")
        self.graph = Graph(self.bundle.model_path, manifest.model.latent_dim, providers,
                           intra_op_threads)
        self.provider = self.graph.provider
        schema = manifest.input
        self.preprocessor: TabularPreprocessor | ImagePreprocessor
        if isinstance(schema, TabularInput):
            self.preprocessor = TabularPreprocessor(schema)
        else:
            assert isinstance(schema, ImageInput)
            self.preprocessor = ImagePreprocessor(schema, max_pixels=max_pixels)
        self.input_dim = manifest.model.input_dim
        self.latent_dim = manifest.model.latent_dim

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def threshold(self) -> float:
        return self.bundle.threshold

    def score(self, x: np.ndarray, seeds: int | Sequence[int] = DEFAULT_SEED,
              mc_samples: int | None = None) -> ScoreResult:
        """Score preprocessed inputs ``x`` (B, D). ``seeds``: one for all rows or one per row."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise InputError(f"expected input of shape (batch, {self.input_dim}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InputError("input contains NaN or infinite values")
        L = mc_samples or self.mc_samples
        if x.shape[0] == 0:
            raise InputError("nothing to score: the batch is empty")
        score, feature_scores, reconstruction = self.graph.run(x, seeds, L)
        scores = score.astype(np.float64)
        return ScoreResult(
            scores=scores,
            feature_scores=feature_scores,
            reconstruction=reconstruction,
            p_values=p_values(scores, self.bundle.calibration_scores),
            is_anomaly=scores > self.threshold,
            threshold=self.threshold,
            mc_samples=L,
        )

    def score_rows(self, rows: Sequence[Mapping[str, Any]]
                   | Mapping[str, Sequence[Any] | np.ndarray],
                   seeds: int | Sequence[int] = DEFAULT_SEED,
                   mc_samples: int | None = None) -> ScoreResult:
        """Score raw tabular rows (list of dicts, or dict of columns); bad values raise."""
        prep = self._tabular()
        columns = rows if isinstance(rows, Mapping) else rows_to_columns(rows)
        return self.score(prep.transform(columns).x, seeds, mc_samples)

    def score_images(self, images: Sequence[bytes | np.ndarray | Image.Image],
                     seeds: int | Sequence[int] = DEFAULT_SEED,
                     mc_samples: int | None = None) -> ScoreResult:
        """Score encoded images (bytes), PIL images or (C, H, W) arrays in [0, 1]."""
        prep = self._image()
        return self.score(prep.transform_images(images), seeds, mc_samples)

    def heatmaps(self, result: ScoreResult) -> np.ndarray:
        """Per-pixel anomaly maps (B, H, W): feature scores summed over channels."""
        c, h, w = self._image().shape
        return result.feature_scores.reshape(-1, c, h, w).sum(axis=1)

    def top_columns(self, result: ScoreResult, k: int) -> list[list[tuple[str, float]]]:
        """For each row, the k columns with the highest per-column score (attribution)."""
        prep = self._tabular()
        cols = prep.column_scores(result.feature_scores)  # (B, n_columns)
        names = prep.column_names
        order = np.argsort(-cols, axis=1, kind="stable")[:, :k]
        return [[(names[j], float(cols[i, j])) for j in row] for i, row in enumerate(order)]

    def _tabular(self) -> TabularPreprocessor:
        if not isinstance(self.preprocessor, TabularPreprocessor):
            raise InputError(f"model '{self.bundle.name}' scores images, not rows")
        return self.preprocessor

    def _image(self) -> ImagePreprocessor:
        if not isinstance(self.preprocessor, ImagePreprocessor):
            raise InputError(f"model '{self.bundle.name}' scores rows, not images")
        return self.preprocessor
