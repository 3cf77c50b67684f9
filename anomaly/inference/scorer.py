"""Score with a bundle: preprocessing, the score-only graph, thresholds and p-values; the
per-feature scores and the reconstruction (the full graph) only when asked for or read. No
torch here; the scoring math lives in the exported graphs (:mod:`anomaly.inference.graph`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from anomaly.bundle import Bundle, ImageInput, Manifest, TabularInput, load_bundle
from anomaly.calibration.threshold import PValues
from anomaly.errors import InputError
from anomaly.inference.graph import Graph, seed_array
from anomaly.inference.noise import DEFAULT_SEED, check_method
from anomaly.inference.uncertainty import score_se
from anomaly.preprocessing import (
    DEFAULT_MAX_PIXELS,
    MAX_STANDARD,
    ImagePreprocessor,
    TabularPreprocessor,
    all_finite,
)

if TYPE_CHECKING:
    import pandas as pd


class Explanation:
    """Per-feature scores and reconstruction of a batch, computed when first read.

    Plain scoring runs the score-only graph; the full graph runs for these rows only when a
    caller reads :attr:`ScoreResult.feature_scores` or :attr:`ScoreResult.reconstruction`.
    The noise is a function of the seeds, so the values are the ones a single call of the
    full graph gives (its ``score`` output is computed by the same nodes)."""

    __slots__ = ("_arrays", "_graph", "_mc_samples", "_noise", "_seeds", "_x")

    def __init__(self, graph: Graph | None, x: np.ndarray | None,
                 seeds: int | np.ndarray, mc_samples: int, noise: str = "iid",
                 arrays: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self._graph, self._x, self._seeds, self._mc_samples = graph, x, seeds, mc_samples
        self._noise = noise
        self._arrays = arrays

    @classmethod
    def of(cls, feature_scores: np.ndarray, reconstruction: np.ndarray) -> Explanation:
        """Already computed arrays, (B, D) each."""
        return cls(None, None, 0, 0, arrays=(feature_scores, reconstruction))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(feature_scores (B, D), reconstruction (B, D)), computing them once.

        No lock (one per result cost a tenth of a single-row call): two threads that read
        the same result at once may both compute it and get the same arrays, since the
        noise is a function of the seeds. ``_arrays`` is set before ``_x`` is dropped, so a
        reader that finds ``_x`` gone finds the arrays."""
        x = self._x
        if x is not None and self._arrays is None:
            assert self._graph is not None
            _, fs, rec, _ = self._graph.explain(x, self._seeds, self._mc_samples, self._noise)
            self._arrays = (fs, rec)
            self._x = None
        arrays = self._arrays
        assert arrays is not None
        return arrays

    def rows(self, start: int, stop: int) -> Explanation:
        """The explanation of rows start:stop (lazy if this one is not computed yet)."""
        x = self._x
        if x is None:  # computed (or made computed by Explanation.of)
            fs, rec = self.arrays()
            return Explanation.of(fs[start:stop], rec[start:stop])
        seeds = self._seeds if isinstance(self._seeds, int) else self._seeds[start:stop]
        return Explanation(self._graph, x[start:stop], seeds, self._mc_samples, self._noise)


@dataclass(frozen=True)
class ScoreResult:
    """Scores for B samples. Scores are -log reconstruction probability in nats (higher =
    more anomalous); ``feature_scores`` are the same per input feature (pixel, one-hot slot),
    computed by the full graph only when read (see :class:`Explanation`)."""

    scores: np.ndarray  # (B,) float64
    p_values: np.ndarray  # (B,)
    is_anomaly: np.ndarray  # (B,) bool
    threshold: float
    mc_samples: int
    explanation: Explanation = field(repr=False, compare=False)
    #: (L, B) per-draw log-likelihoods, the terms of each score's log-mean-exp; None for
    #: bundles whose graphs predate that output
    log_weights: np.ndarray | None = field(default=None, repr=False, compare=False)
    noise: str = "iid"  # how the L latent draws were made (:mod:`.noise`)

    def __init__(self, scores: np.ndarray, p_values: np.ndarray, is_anomaly: np.ndarray,
                 threshold: float, mc_samples: int, explanation: Explanation,
                 log_weights: np.ndarray | None = None, noise: str = "iid") -> None:
        # one dict update instead of the frozen dataclass's object.__setattr__ per field:
        # 0.7 us against 1.2 us, once per Scorer call (the fields stay frozen after)
        self.__dict__.update(scores=scores, p_values=p_values, is_anomaly=is_anomaly,
                             threshold=threshold, mc_samples=mc_samples,
                             explanation=explanation, log_weights=log_weights, noise=noise)

    @cached_property
    def score_se(self) -> np.ndarray | None:
        """(B,) Monte Carlo standard error of each score in nats (:mod:`.uncertainty`),
        computed when first read; None without per-draw outputs, NaN where L is too small."""
        return None if self.log_weights is None else score_se(self.log_weights, self.noise)

    @property
    def feature_scores(self) -> np.ndarray:
        """(B, D) per-feature scores in nats."""
        return self.explanation.arrays()[0]

    @property
    def reconstruction(self) -> np.ndarray:
        """(B, D) decoder mean averaged over the L draws."""
        return self.explanation.arrays()[1]

    def rows(self, start: int, stop: int) -> ScoreResult:
        """Rows start:stop of this result (views, no copies; explanations stay lazy)."""
        if start == 0 and stop == len(self):
            return self
        return ScoreResult(self.scores[start:stop], self.p_values[start:stop],
                           self.is_anomaly[start:stop], self.threshold, self.mc_samples,
                           self.explanation.rows(start, stop),
                           None if self.log_weights is None
                           else self.log_weights[:, start:stop], self.noise)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


#: MAX_STANDARD as the overflow message writes it (1e12)
_CLIP = f"{MAX_STANDARD:.0e}".replace("e+", "e")


def _not_finite(given: np.ndarray, x: np.ndarray) -> str:
    """Why x (B, D) float32 is not finite: NaN or inf given, or values float32 cannot hold
    (beyond 3.4e38 once scaled, such as 1e39 in a column of unit scale)."""
    bad = np.argwhere(~np.isfinite(x))[0]
    where = f"row {int(bad[0])}, feature {int(bad[1])}"
    given = np.asarray(given)
    if given.dtype.kind == "f" and np.isfinite(given[tuple(bad)]):
        return (f"input value too large at {where}: {float(given[tuple(bad)]):g} is beyond "
                "the float32 range the model computes in (about 3.4e38); check the value")
    return f"input contains NaN or infinite values (first at {where})"


class Scorer:
    """An onnxruntime session over one bundle, plus its preprocessing and calibration."""

    def __init__(self, bundle: Bundle | str | os.PathLike[str],
                 providers: Sequence[str] | None = None, mc_samples: int | None = None,
                 intra_op_threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, noise: str | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        manifest = self.bundle.manifest
        self.mc_samples = mc_samples or manifest.model.mc_samples
        #: how latent draws are made unless a call says otherwise (the bundle's choice)
        self.noise: str = check_method(noise or manifest.model.noise)
        if self.mc_samples < 1:
            raise InputError(f"mc_samples must be >= 1, got {self.mc_samples}")
        self.graph = Graph(self.bundle.model_path, manifest.model.latent_dim, providers,
                           intra_op_threads, score_model=self.bundle.score_model_path)
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
        self._p_values = PValues(self.bundle.calibration_scores)
        # a 0-d array: numpy compares against it without converting a Python float per call
        self._threshold = np.array(self.bundle.threshold, dtype=np.float64)

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def threshold(self) -> float:
        return self.bundle.threshold

    def score(self, x: np.ndarray, seeds: int | Sequence[int] = DEFAULT_SEED,
              mc_samples: int | None = None, explain: bool = False,
              noise: str | None = None) -> ScoreResult:
        """Score preprocessed inputs ``x`` (B, D). ``seeds``: one for all rows or one per row.

        ``explain``: compute feature scores and reconstruction in the same call (the full
        graph); otherwise the score-only graph runs and they are computed when first read.
        ``noise``: ``iid``, ``antithetic`` or ``sobol`` draws (default: the bundle's)."""
        given = x
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise InputError(f"expected input of shape (batch, {self.input_dim}), got {x.shape}")
        if x.shape[0] == 0:
            raise InputError("nothing to score: the batch is empty")
        L = mc_samples or self.mc_samples
        method = self.noise if noise is None else check_method(noise)
        seed = seed_array(seeds, x.shape[0])
        if explain:
            score, feature_scores, reconstruction, log_w = self.graph.explain(x, seed, L, method)
            explanation = Explanation.of(feature_scores, reconstruction)
        else:
            score, log_w = self.graph.score_and_weights(x, seed, L, method)
            # the caller's own array may be reused after this call: keep a copy to explain
            explanation = Explanation(self.graph, x.copy() if x is given else x, seed, L,
                                      method)
        # NaN or inf in x always reaches the score (every feature enters the likelihood), so
        # the (B, D) check runs only when a score is not finite: B values instead of B * D;
        # a finite x whose score overflows is too far out to score
        if not all_finite(score):
            if not all_finite(x):
                raise InputError(_not_finite(given, x))
            row = int(np.flatnonzero(~np.isfinite(score))[0])
            raise InputError(f"the score of row {row} overflowed float32: its inputs reach "
                             f"{float(np.abs(x[row]).max()):g}, far outside the standardised "
                             "scale the model reads (rows encoded by the bundle's "
                             f"preprocessing are clipped to {_CLIP})")
        scores = score.astype(np.float64)
        return ScoreResult(
            scores=scores,
            p_values=self._p_values(scores),
            is_anomaly=scores > self._threshold,
            threshold=self.bundle.threshold,
            mc_samples=L,
            explanation=explanation,
            log_weights=log_w,
            noise=method,
        )

    def score_rows(self, rows: Sequence[Mapping[str, Any]]
                   | Mapping[str, Sequence[Any] | np.ndarray] | pd.DataFrame,
                   seeds: int | Sequence[int] = DEFAULT_SEED,
                   mc_samples: int | None = None, noise: str | None = None) -> ScoreResult:
        """Score raw tabular rows (list of dicts, dict of columns, or a pandas DataFrame,
        read as :meth:`score_frame` reads it); bad values raise."""
        prep = self.tabular
        if type(rows) is list:  # the service's case, without the import and ABC checks
            return self.score(prep.encode_rows(rows), seeds, mc_samples, noise=noise)
        from anomaly.inference.frame import frame_columns, is_frame

        if is_frame(rows):
            rows = frame_columns(rows)
        elif not isinstance(rows, Mapping | Sequence) or isinstance(rows, str | bytes):
            raise InputError(f"rows must be a list of {{column: value}} dicts, a dict of "
                             f"columns or a pandas DataFrame, not {type(rows).__name__} (an "
                             "array already encoded as the model's x goes to score(x))")
        x = prep.transform(rows).x if isinstance(rows, Mapping) else prep.encode_rows(rows)
        return self.score(x, seeds, mc_samples, noise=noise)

    def score_images(self, images: Sequence[bytes | np.ndarray | Image.Image],
                     seeds: int | Sequence[int] = DEFAULT_SEED,
                     mc_samples: int | None = None, noise: str | None = None) -> ScoreResult:
        """Score encoded images (bytes), PIL images or (C, H, W) arrays in [0, 1]."""
        prep = self.image
        return self.score(prep.transform_images(images), seeds, mc_samples, noise=noise)

    def score_frame(self, frame: Any, explain: int = 0,
                    seeds: int | Sequence[int] = DEFAULT_SEED,
                    mc_samples: int | None = None, score_se: bool = False) -> Any:
        """A pandas DataFrame of raw rows -> a DataFrame on its index: score, p_value,
        is_anomaly (+ score_se, + the top ``explain`` columns);
        :func:`anomaly.inference.frame.score_frame`."""
        from anomaly.inference.frame import score_frame

        return score_frame(self, frame, explain, seeds, mc_samples, score_se)

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
