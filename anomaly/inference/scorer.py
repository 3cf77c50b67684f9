"""Score with a bundle: preprocessing, one graph call (score, per-feature scores and the
reconstruction), thresholds and p-values. No torch here; the scoring math lives in the
exported graph (:mod:`anomaly.inference.graph`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from anomaly.bundle import Bundle, ImageInput, Manifest, TabularInput, load_bundle
from anomaly.calibration.threshold import p_values
from anomaly.errors import InputError
from anomaly.inference.graph import Graph
from anomaly.inference.noise import DEFAULT_SEED
from anomaly.preprocessing import DEFAULT_MAX_PIXELS, ImagePreprocessor, TabularPreprocessor


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
        prep = self.tabular
        x = prep.transform(rows).x if isinstance(rows, Mapping) else prep.encode_rows(rows)
        return self.score(x, seeds, mc_samples)

    def score_images(self, images: Sequence[bytes | np.ndarray | Image.Image],
                     seeds: int | Sequence[int] = DEFAULT_SEED,
                     mc_samples: int | None = None) -> ScoreResult:
        """Score encoded images (bytes), PIL images or (C, H, W) arrays in [0, 1]."""
        prep = self.image
        return self.score(prep.transform_images(images), seeds, mc_samples)

    def score_frame(self, frame: Any, explain: int = 0,
                    seeds: int | Sequence[int] = DEFAULT_SEED,
                    mc_samples: int | None = None) -> Any:
        """A pandas DataFrame of raw rows -> a DataFrame on its index: score, p_value,
        is_anomaly (+ the top ``explain`` columns); :func:`anomaly.inference.frame.score_frame`."""
        from anomaly.inference.frame import score_frame

        return score_frame(self, frame, explain, seeds, mc_samples)

    def heatmaps(self, result: ScoreResult) -> np.ndarray:
        """Per-pixel anomaly maps (B, H, W): feature scores summed over channels."""
        c, h, w = self.image.shape
        return result.feature_scores.reshape(-1, c, h, w).sum(axis=1)

    def top_columns(self, result: ScoreResult, k: int) -> list[list[tuple[str, float]]]:
        """For each row, the k columns with the highest per-column score (attribution)."""
        prep = self.tabular
        cols = prep.column_scores(result.feature_scores)  # (B, n_columns)
        names = prep.column_names
        order = np.argsort(-cols, axis=1, kind="stable")[:, :k]
        return [[(names[j], float(cols[i, j])) for j in row] for i, row in enumerate(order)]

    @property
    def tabular(self) -> TabularPreprocessor:
        """The preprocessor of a tabular bundle; InputError for an image bundle."""
        if not isinstance(self.preprocessor, TabularPreprocessor):
            raise InputError(f"model '{self.bundle.name}' scores images, not rows")
        return self.preprocessor

    @property
    def image(self) -> ImagePreprocessor:
        """The preprocessor of an image bundle; InputError for a tabular bundle."""
        if not isinstance(self.preprocessor, ImagePreprocessor):
            raise InputError(f"model '{self.bundle.name}' scores rows, not images")
        return self.preprocessor
