"""The Prometheus metrics of docs/metrics.md, and nothing else (a private registry: no
process or ``_created`` series that the dashboard and alert rules do not know about).

Per-sample histograms (scores, p-values, queue waits) are observed a batch at a time with
numpy, and ``anomaly_score`` needs different bucket bounds per model (its calibration
quantiles), which ``prometheus_client.Histogram`` cannot do; so histograms use the small
:class:`VectorHistogram` collector here. All observations and scrapes happen on the event-loop
thread, so these histograms need no lock.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from service.stats import InferenceStats

disable_created_metrics()

OUTCOMES = ("ok", "client_error", "server_error", "rejected", "unauthorized")
#: samples per onnxruntime call
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))  # 1, 2, 4, ..., 1024
P_VALUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
#: seconds; the p99 < 25 ms aim sits in the middle of the range
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
QUEUE_WAIT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                      0.05, 0.1, 0.25, 1.0)
#: calibration-score quantiles that become the ``anomaly_score`` bucket bounds of a model
SCORE_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999)
#: The ``version`` label of a request that did not reach a loaded version (an unknown or
#: unloaded version, no version loaded, or unauthorised before one was resolved): one bounded
#: value per model, so that no request can create series of its own choosing.
UNRESOLVED = ""


@dataclass
class HistogramChild:
    """Counts of one label set. ``bounds`` (K,) ascending; ``counts`` (K + 1,) per bucket
    (not cumulative; the last is +Inf)."""

    bounds: np.ndarray
    counts: np.ndarray = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.bounds.size + 1, dtype=np.int64)
        self._bounds_list: list[float] = self.bounds.tolist()  # for the scalar path

    def observe_many(self, values: np.ndarray) -> None:
        """Observe every value in ``values`` (any shape); ``le`` semantics: v <= bound."""
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        if flat.size == 1:  # single-sample requests: numpy's call overhead would dominate
            self.observe(float(flat[0]))
            return
        if flat.size == 0:
            return
        idx = np.searchsorted(self.bounds, flat, side="left")
        self.counts += np.bincount(idx, minlength=self.counts.size)
        self.total += float(flat.sum())

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds_list, value)] += 1
        self.total += value


class VectorHistogram(Collector):
    """A labelled histogram whose children may each have their own bucket bounds."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float] | None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.default_bounds = None if buckets is None else np.asarray(buckets, dtype=np.float64)
        self._children: dict[tuple[str, ...], HistogramChild] = {}

    def labels(self, *values: str, bounds: Sequence[float] | np.ndarray | None = None
               ) -> HistogramChild:
        """The child for these label values. ``bounds`` replaces the default buckets; a child
        asked for with different bounds (a re-trained bundle under the same version) starts
        afresh, which Prometheus reads as a counter reset."""
        child = self._children.get(values)
        if child is not None and (bounds is None or np.array_equal(child.bounds, bounds)):
            return child
        chosen = np.asarray(bounds, dtype=np.float64) if bounds is not None \
            else self.default_bounds
        if chosen is None:
            raise ValueError(f"{self.name} has no default buckets; pass bounds")
        chosen = np.unique(chosen[np.isfinite(chosen)])  # ascending, distinct
        if child is not None and np.array_equal(child.bounds, chosen):
            return child
        child = self._children[values] = HistogramChild(chosen)
        return child

    def remove(self, *values: str) -> None:
        """Drop the child of these label values (no error when there is none)."""
        self._children.pop(values, None)

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation,
                                       labels=list(self.labelnames))
        for values, child in sorted(self._children.items()):
            cumulative = np.cumsum(child.counts)
            buckets = [(floatToGoString(b), float(c))
                       for b, c in zip(child.bounds.tolist(), cumulative[:-1].tolist(),
                                       strict=True)]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(values), buckets, child.total)
        yield family


def score_bounds(calibration_sorted: np.ndarray, threshold: float) -> np.ndarray:
    """``anomaly_score`` buckets of one model: its calibration quantiles plus the threshold,
    so ``le="<threshold>"`` counts exactly the samples not flagged."""
    q = np.quantile(calibration_sorted, SCORE_QUANTILES, method="higher")
    return np.unique(np.append(q, threshold))


class ServiceMetrics:
    """Every metric of docs/metrics.md in one private registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        mv = ("model", "version")
        self.requests = Counter("anomaly_requests_total", "Scoring requests by outcome.",
                                [*mv, "outcome"], registry=r)
        self.request_duration = VectorHistogram(
            "anomaly_request_duration_seconds",
            "Wall time of a scoring request, from arrival to response.", mv, DURATION_BUCKETS)
        self.queue_wait = VectorHistogram(
            "anomaly_queue_wait_seconds",
            "Time a sample waited in the dynamic-batching queue.", mv, QUEUE_WAIT_BUCKETS)
        self.batch_size = VectorHistogram(
            "anomaly_batch_size", "Samples per onnxruntime call.", mv, BATCH_BUCKETS)
        self.queue_depth = Gauge("anomaly_queue_depth",
                                 "Samples waiting in the batching queue now.", mv, registry=r)
        self.samples = Counter("anomaly_samples_scored_total", "Samples scored.", mv,
                               registry=r)
        self.anomalies = Counter("anomaly_anomalies_total",
                                 "Samples flagged (score > threshold).", mv, registry=r)
        self.score = VectorHistogram(
            "anomaly_score", "Anomaly scores (nats); buckets are the model's calibration "
            "quantiles.", mv, None)
        self.p_value = VectorHistogram("anomaly_p_value", "Conformal p-values.", mv,
                                       P_VALUE_BUCKETS)
        self.threshold = Gauge("anomaly_threshold", "The calibrated score threshold in use.",
                               mv, registry=r)
        self.target_fpr = Gauge("anomaly_target_fpr",
                                "The calibrated false-positive rate (expected anomaly rate "
                                "on normal traffic).", mv, registry=r)
        self.model_info = Gauge("anomaly_model_info",
                                "One series (=1) per loaded model version.",
                                [*mv, "provider"], registry=r)
        self.model_ready = Gauge("anomaly_model_ready",
                                 "1 when the model has a version that serves, else 0.",
                                 ["model"], registry=r)
        self.load_failures = Counter("anomaly_model_load_failures_total",
                                     "Failed (re)loads of a bundle.", ["model"], registry=r)
        self.last_reload = Gauge("anomaly_model_last_reload_timestamp_seconds",
                                 "Unix time of the last successful (re)load.", ["model"],
                                 registry=r)
        for hist in (self.request_duration, self.queue_wait, self.batch_size, self.score,
                     self.p_value):
            r.register(hist)

    def version(self, model: str, version: int, provider: str, threshold: float,
                target_fpr: float, calibration_sorted: np.ndarray) -> VersionMetrics:
        """Create (or find) the series of one loaded model version and publish its gauges."""
        v = str(version)
        self.model_info.labels(model, v, provider).set(1)
        self.threshold.labels(model, v).set(threshold)
        self.target_fpr.labels(model, v).set(target_fpr)
        return VersionMetrics(
            model=model, version=v,
            requests={o: self.requests.labels(model, v, o) for o in OUTCOMES},
            duration=self.request_duration.labels(model, v),
            queue_wait=self.queue_wait.labels(model, v),
            batch_size=self.batch_size.labels(model, v),
            queue_depth=self.queue_depth.labels(model, v),
            samples=self.samples.labels(model, v),
            anomalies=self.anomalies.labels(model, v),
            score=self.score.labels(model, v,
                                    bounds=score_bounds(calibration_sorted, threshold)),
            p_value=self.p_value.labels(model, v),
        )

    def retire(self, model: str, version: int, provider: str) -> None:
        """Drop the gauges that describe a loaded version at once, when it stops taking new
        requests (its counters and histograms go in :meth:`forget_version`, once the requests
        it still holds have been counted)."""
        v = str(version)
        for gauge, labels in ((self.model_info, (model, v, provider)),
                              (self.threshold, (model, v)), (self.target_fpr, (model, v)),
                              (self.queue_depth, (model, v))):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def forget_version(self, model: str, version: int | str) -> None:
        """Remove every series of an unloaded (model, version), so that the number of series
        follows the loaded versions, not the history of the process."""
        v = str(version)
        for gauge in (self.threshold, self.target_fpr, self.queue_depth, self.samples,
                      self.anomalies):
            with contextlib.suppress(KeyError):
                gauge.remove(model, v)
        for outcome in OUTCOMES:
            with contextlib.suppress(KeyError):
                self.requests.remove(model, v, outcome)
        for hist in (self.request_duration, self.queue_wait, self.batch_size, self.score,
                     self.p_value):
            hist.remove(model, v)
        info = [labels for labels in _label_sets(self.model_info)
                if labels[0] == model and labels[1] == v]
        for labels in info:
            self.model_info.remove(*labels)

    def forget_model(self, model: str) -> None:
        """Remove the series of a model whose directory is gone (its versions' go through
        :meth:`forget_version`)."""
        self.forget_version(model, UNRESOLVED)
        for gauge in (self.model_ready, self.load_failures, self.last_reload):
            with contextlib.suppress(KeyError):
                gauge.remove(model)

    def model_seen(self, model: str) -> None:
        """Create the per-model series at 0, so increase() and absent() work from the start."""
        self.load_failures.labels(model)
        self.model_ready.labels(model)

    def model_loaded(self, model: str) -> None:
        self.last_reload.labels(model).set(time.time())

    def model_load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def set_ready(self, model: str, ready: bool) -> None:
        self.model_ready.labels(model).set(1 if ready else 0)

    def unresolved_request(self, model: str, outcome: str, duration_s: float) -> None:
        """Count a request to a loaded model that never reached a loaded version (unknown
        version, unauthorised, ...) under ``version=""`` (:data:`UNRESOLVED`)."""
        self.requests.labels(model, UNRESOLVED, outcome).inc()
        self.request_duration.labels(model, UNRESOLVED).observe(duration_s)


def _label_sets(metric: Gauge) -> list[tuple[str, ...]]:
    """The label values of every child of a labelled metric (prometheus_client keeps them in
    ``_metrics``; there is no public accessor)."""
    with metric._lock:
        return [tuple(labels) for labels in metric._metrics]


@dataclass
class VersionMetrics:
    """The children of one (model, version), looked up once instead of per request."""

    model: str
    version: str
    requests: dict[str, Counter]
    duration: HistogramChild
    queue_wait: HistogramChild
    batch_size: HistogramChild
    queue_depth: Gauge
    samples: Counter
    anomalies: Counter
    score: HistogramChild
    p_value: HistogramChild
    #: Triton's statistics extension for this version (not a Prometheus metric)
    stats: InferenceStats = field(default_factory=InferenceStats)

    def scored(self, scores: np.ndarray, p_values: np.ndarray, flags: np.ndarray) -> None:
        """Per-sample outputs of one onnxruntime batch (every request in it): scores (B,),
        p-values (B,), flags (B,) bool."""
        if scores.size == 1:  # a batch of one sample, without numpy's overheads
            self.samples.inc()
            if flags[0]:
                self.anomalies.inc()
            self.score.observe(float(scores[0]))
            self.p_value.observe(float(p_values[0]))
            return
        self.samples.inc(int(scores.size))
        n_flagged = int(np.count_nonzero(flags))
        if n_flagged:
            self.anomalies.inc(n_flagged)
        self.score.observe_many(scores)
        self.p_value.observe_many(p_values)

    def finished(self, outcome: str, duration_s: float) -> None:
        self.requests[outcome].inc()
        self.duration.observe(duration_s)
        self.stats.request(outcome == "ok", duration_s)
