"""The exported scoring graphs on onnxruntime: preprocessed ``x`` in, Monte Carlo scores out.

The one place that picks execution providers, draws the latent noise and calls the model,
shared by scoring, calibration at training time and the service.

A bundle written since schema 2's ``files.score_model`` holds two graphs: the score alone
(``score.onnx``, what :meth:`Graph.score` runs) and the full one (``model.onnx``: score,
feature_scores, reconstruction; :meth:`Graph.explain`), whose session is only made the first
time an explanation is asked for. onnxruntime computes every node of a graph whatever the
caller fetches, so the score-only graph is what keeps plain scoring free of per-feature
work. Older bundles hold the full graph alone and score with it.

Session options, chosen on purpose (``benchmarks/scoring.py`` measures the result):

* ``ORT_ENABLE_ALL``: constant folding, Gemm + activation fusion, and for conv models the
  NCHWc layout transforms (their convolutions run blocked for AVX2/AVX-512).
* Sequential execution, one inter-op thread: the graph is a chain, a parallel executor only
  adds scheduling. ``intra_op_threads`` parallelises inside each GEMM; the batch engine asks
  for 1 per session and runs one session per core, which keeps every core busy without
  onnxruntime's thread pool.
* The memory arena and memory patterns stay on (the defaults): calls are chunked to a
  fixed size (below), so the same buffers are reused call after call.
* Calls are chunked so that an (L * B, D) intermediate holds about :data:`CHUNK_FLOATS`
  floats (1 MiB, cache-sized), measured on one thread: the MNIST-size MLP's score graph ran
  4,967 samples/s at L * B = 2,560 rows per call and 5,372 at 320-640 (L = 10); the
  41-column tabular model (D = 91, L = 16) 51,041 rows/s at L * B = 5,760, 55,231 at 2,880
  and 37,873 at 23,040. Small tabular models want thousands of rows per call, to spread
  onnxruntime's fixed cost per call and per node.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomaly.errors import BundleError, MissingExtraError
from anomaly.inference.noise import latent_noise

log = logging.getLogger(__name__)

#: Floats in one (L * B_chunk, D) intermediate; B is cut into chunks of at most
#: ``max(1, CHUNK_FLOATS // (L * D))`` rows per onnxruntime call.
CHUNK_FLOATS = 1 << 18
_FULL = ["score", "feature_scores", "reconstruction"]
#: (L, B) per-draw log-likelihoods: an output of graphs exported since it exists
LOG_WEIGHTS = "log_weights"


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


def session_options(intra_op_threads: int | None = None) -> Any:
    """The onnxruntime session options every scoring session uses (see the module doc)."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def run_session(session: Any, outputs: list[str], feed: dict[str, np.ndarray]
                ) -> list[np.ndarray]:
    """``session.run(outputs, feed)`` through the compiled session the Python wrapper holds
    (``session._sess``), skipping the wrapper's checks of a feed this module builds itself:
    1.6 us of a 30 us call of a small tabular graph at B = 1, measured. Any error goes
    through the public ``run``, which raises onnxruntime's own message, or falls back to
    the CPU provider when a CUDA run fails; the compiled session is looked up per call,
    since that fallback replaces it."""
    inner = getattr(session, "_sess", None)
    if inner is not None:
        try:
            return inner.run(outputs, feed, None)
        except Exception:  # raised again, with its message, by the public run below
            pass
    return session.run(outputs, feed)


def seed_array(seeds: int | Sequence[int] | np.ndarray, batch: int) -> int | np.ndarray:
    """One seed for every row (an int), or one per row as an (B,) int64 array; a per-row
    list whose seeds are all equal collapses to the int (the cached, broadcast noise)."""
    if isinstance(seeds, int | np.integer):
        return int(seeds)
    arr = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if arr.size != batch:
        raise ValueError(f"got {arr.size} seeds for {batch} samples")
    if arr.size and bool(np.all(arr == arr[0])):
        return int(arr[0])
    return arr


class Graph:
    """onnxruntime sessions over a bundle's graphs (paths or bytes): ``model`` the full graph,
    ``score_model`` the score-only one (None for bundles that predate it)."""

    def __init__(self, model: Path | bytes, latent_dim: int,
                 providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None,
                 score_model: Path | bytes | None = None) -> None:
        self._providers = choose_providers(providers)
        self._intra_op_threads = intra_op_threads
        self._model = model
        self._full: Any = None
        self._lock = threading.Lock()
        if score_model is None:
            self._full = self._session(model)
            self._score = self._full
        else:
            self._score = self._session(score_model)
        #: the providers the session runs on, in order; the first does the work
        self.providers: list[str] = list(self._score.get_providers())
        self.provider: str = self.providers[0]
        self.latent_dim = latent_dim
        self.input_dim = int(self._score.get_inputs()[0].shape[1])
        self.score_only = score_model is not None
        has_weights = LOG_WEIGHTS in {o.name for o in self._score.get_outputs()}
        self._score_outputs = ["score", LOG_WEIGHTS] if has_weights else ["score"]
        # both graphs of a bundle come from one export: they have the output or neither
        self._full_outputs = [*_FULL, LOG_WEIGHTS] if has_weights else _FULL

    def _session(self, source: Path | bytes) -> Any:
        ort = onnxruntime()
        try:
            return ort.InferenceSession(
                source if isinstance(source, bytes) else str(source),
                session_options(self._intra_op_threads), providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"onnxruntime cannot load the model graph: {exc}") from exc

    @property
    def score_session(self) -> Any:
        """The session plain scoring runs (the score-only graph, or the full one)."""
        return self._score

    @property
    def full_session(self) -> Any:
        """The full graph's session, made on first use (one lock, so one session)."""
        if self._full is None:
            with self._lock:
                if self._full is None:
                    self._full = self._session(self._model)
        return self._full

    def score(self, x: np.ndarray, seeds: int | Sequence[int] | np.ndarray, mc_samples: int,
              noise: str = "iid") -> np.ndarray:
        """x (B, D) float32 -> score (B,) float32, in nats."""
        return self.score_and_weights(x, seeds, mc_samples, noise)[0]

    def score_and_weights(self, x: np.ndarray, seeds: int | Sequence[int] | np.ndarray,
                          mc_samples: int, noise: str = "iid"
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """score (B,) and the per-draw log-likelihoods (L, B) (None for graphs exported
        before they were an output)."""
        out = self._run(self._score, self._score_outputs, x, seeds, mc_samples, noise)
        return out[0], (out[1] if len(out) > 1 else None)

    def explain(self, x: np.ndarray, seeds: int | Sequence[int] | np.ndarray, mc_samples: int,
                noise: str = "iid"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """x (B, D) float32 -> score (B,), feature_scores (B, D), reconstruction (B, D),
        log_weights (L, B) (None for older graphs)."""
        session = self.full_session
        out = self._run(session, self._full_outputs, x, seeds, mc_samples, noise)
        return out[0], out[1], out[2], (out[3] if len(out) > 3 else None)

    def run(self, x: np.ndarray, seeds: int | Sequence[int] | np.ndarray, mc_samples: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The full graph's score, feature_scores and reconstruction (the call before
        score-only graphs existed)."""
        return self.explain(x, seeds, mc_samples)[:3]

    def chunk_rows(self, mc_samples: int) -> int:
        """Rows of x per onnxruntime call at this L (see :data:`CHUNK_FLOATS`)."""
        return max(1, CHUNK_FLOATS // (mc_samples * max(self.input_dim, 1)))

    def _run(self, session: Any, outputs: list[str], x: np.ndarray,
             seeds: int | Sequence[int] | np.ndarray, mc_samples: int, noise: str
             ) -> list[np.ndarray]:
        rows = x.shape[0]
        seed = seed_array(seeds, rows)
        step = self.chunk_rows(mc_samples)
        if rows <= step and isinstance(seed, int):  # the common case, without the loop
            eps = latent_noise(seed, rows, mc_samples, self.latent_dim, noise)
            return run_session(session, outputs, {"x": x, "eps": np.ascontiguousarray(eps)})
        parts = []
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            chunk_seeds = seed if isinstance(seed, int) else seed[start:stop]
            eps = np.ascontiguousarray(
                latent_noise(chunk_seeds, stop - start, mc_samples, self.latent_dim, noise))
            parts.append(run_session(session, outputs, {"x": x[start:stop], "eps": eps}))
        if len(parts) == 1:
            return list(parts[0])
        return [np.concatenate(p, axis=1 if name == LOG_WEIGHTS else 0)  # (L, B) on axis 1
                for name, p in zip(outputs, zip(*parts, strict=True), strict=True)]
