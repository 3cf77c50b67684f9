"""The numbers behind Triton's statistics extension
(``GET /v2/models[/{name}[/versions/{v}]]/stats``): per loaded model version, counts and
cumulative nanoseconds since it was loaded, in the shape of Triton's ``$model_stat``.

Why a second account next to the Prometheus metrics: Triton clients
(``tritonclient.get_inference_statistics``) read these fields, and Prometheus histograms keep
neither per-outcome durations nor per-batch-size compute times. Kept as plain integers,
updated on the event-loop thread (a handful of additions per request and per batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class DurationStat:
    """Triton's ``$duration_stat``: how often something happened and its total time."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)

    def describe(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStat:
    """One batch size's executions: Triton's ``$batch_stats`` entry."""

    compute_input: DurationStat = field(default_factory=DurationStat)
    compute_infer: DurationStat = field(default_factory=DurationStat)
    compute_output: DurationStat = field(default_factory=DurationStat)


@dataclass
class InferenceStats:
    """Statistics of one model version. ``success``/``fail`` count scoring requests that
    reached the version (wall time from arrival to response); ``queue`` and ``compute_*``
    count requests and add the time their batch took for each; ``inference_count`` counts
    samples and ``execution_count`` onnxruntime calls."""

    success: DurationStat = field(default_factory=DurationStat)
    fail: DurationStat = field(default_factory=DurationStat)
    queue: DurationStat = field(default_factory=DurationStat)
    compute_input: DurationStat = field(default_factory=DurationStat)
    compute_infer: DurationStat = field(default_factory=DurationStat)
    compute_output: DurationStat = field(default_factory=DurationStat)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0  # Unix time of the last execution, milliseconds
    batches: dict[int, BatchStat] = field(default_factory=dict)

    def request(self, ok: bool, seconds: float) -> None:
        """A request to this version finished after ``seconds``."""
        (self.success if ok else self.fail).add(seconds)

    def execution(self, samples: int, requests: int, queued_s: float, input_s: float,
                  infer_s: float, output_s: float) -> None:
        """One onnxruntime call of ``samples`` samples from ``requests`` requests that waited
        ``queued_s`` seconds in total; the three phases' durations in seconds."""
        self.inference_count += samples
        self.execution_count += 1
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.queue.add(queued_s, requests)
        self.compute_input.add(input_s * requests, requests)
        self.compute_infer.add(infer_s * requests, requests)
        self.compute_output.add(output_s * requests, requests)
        batch = self.batches.get(samples)
        if batch is None:
            batch = self.batches[samples] = BatchStat()
        batch.compute_input.add(input_s)
        batch.compute_infer.add(infer_s)
        batch.compute_output.add(output_s)

    def describe(self, name: str, version: int) -> dict[str, Any]:
        """Triton's ``$model_stat`` object."""
        return {
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.describe(),
                "fail": self.fail.describe(),
                "queue": self.queue.describe(),
                "compute_input": self.compute_input.describe(),
                "compute_infer": self.compute_infer.describe(),
                "compute_output": self.compute_output.describe(),
                "cache_hit": DurationStat().describe(),  # no response cache
                "cache_miss": DurationStat().describe(),
            },
            "batch_stats": [
                {"batch_size": size, "compute_input": b.compute_input.describe(),
                 "compute_infer": b.compute_infer.describe(),
                 "compute_output": b.compute_output.describe()}
                for size, b in sorted(self.batches.items())],
        }
