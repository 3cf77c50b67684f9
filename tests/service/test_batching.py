"""The dynamic batcher in-process: coalescing, size and queue limits, grouping by MC sample
count, draining on close, and scores independent of batch mates."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from anomaly.errors import InputError
from anomaly.inference import Scorer
from service.batching import BatchConfig, DynamicBatcher
from service.config import Settings
from service.errors import OverloadedError
from service.metrics import ServiceMetrics
from tests.service.conftest import TrainedBundles
from tests.service.test_http import ATOL, RTOL


@pytest.fixture(scope="module")
def scorer(bundles: TrainedBundles) -> Scorer:
    return Scorer(bundles.cancer, providers=["CPUExecutionProvider"])


def _x(scorer: Scorer, bundles: TrainedBundles, n: int) -> np.ndarray:
    rows = bundles.cancer_rows[:n]
    return scorer.preprocessor.transform(  # type: ignore[union-attr]
        {k: [r[k] for r in rows] for k in rows[0]}).x  # (n, 30)


def _batcher(scorer: Scorer, **config: object) -> tuple[DynamicBatcher, ServiceMetrics]:
    metrics = ServiceMetrics()
    vm = metrics.version("cancer", 1, scorer.provider, scorer.threshold, 0.05,
                         scorer.bundle.calibration_scores)
    config = BatchConfig.from_settings(Settings(**config))  # type: ignore[arg-type]
    batcher = DynamicBatcher(scorer, config, vm, "cancer-v1")
    batcher.start()
    return batcher, metrics


def _batch_sizes(metrics: ServiceMetrics) -> np.ndarray:
    child = metrics.batch_size.labels("cancer", "1")
    return child.counts  # per bucket 1, 2, 4, ..., 1024, +Inf


def test_concurrent_items_coalesce_and_keep_their_own_scores(
        scorer: Scorer, bundles: TrainedBundles) -> None:
    x = _x(scorer, bundles, 10)

    async def run() -> tuple[list[float], ServiceMetrics]:
        batcher, metrics = _batcher(scorer, max_batch_size=64, max_queue_delay_us=50_000)
        futures = [batcher.submit(x[i:i + 1], [100 + i], 16) for i in range(10)]
        results = await asyncio.gather(*futures)
        await batcher.close()
        return [float(r.scores[0]) for r in results], metrics

    scores, metrics = asyncio.run(run())
    offline = scorer.score(x, seeds=[100 + i for i in range(10)])
    np.testing.assert_allclose(scores, offline.scores, RTOL, ATOL)
    child = metrics.batch_size.labels("cancer", "1")
    assert child.counts.sum() == 1 and child.total == 10  # one call of 10 samples


def test_max_batch_size_and_disabled_batching(scorer: Scorer, bundles: TrainedBundles) -> None:
    x = _x(scorer, bundles, 10)

    async def run(**config: object) -> np.ndarray:
        batcher, metrics = _batcher(scorer, max_queue_delay_us=50_000, **config)
        await asyncio.gather(*(batcher.submit(x[i:i + 1], [0], 16) for i in range(10)))
        await batcher.close()
        return _batch_sizes(metrics)

    capped = asyncio.run(run(max_batch_size=4))
    assert capped[1] == 1 and capped[2] == 2  # sizes 2 (le=2) and 4, 4 (le=4)
    off = asyncio.run(run(dynamic_batching=False))
    assert off[0] == 10 and off.sum() == 10  # ten calls of one sample


def test_a_request_larger_than_the_batch_runs_alone(scorer: Scorer,
                                                    bundles: TrainedBundles) -> None:
    x = _x(scorer, bundles, 40)

    async def run() -> tuple[int, float]:
        batcher, metrics = _batcher(scorer, max_batch_size=8, max_queue_delay_us=0)
        result = await batcher.submit(x, [0] * 40, 16)
        await batcher.close()
        return len(result), metrics.batch_size.labels("cancer", "1").total

    n, total = asyncio.run(run())
    assert n == 40 and total == 40


def test_queue_is_bounded(scorer: Scorer, bundles: TrainedBundles) -> None:
    x = _x(scorer, bundles, 4)

    async def run() -> None:
        batcher, metrics = _batcher(scorer, max_queue_size=3, max_queue_delay_us=200_000,
                                    retry_after_s=3)
        pending = [batcher.submit(x[i:i + 1], [0], 16) for i in range(3)]
        assert batcher.queued == 3
        assert metrics.registry.get_sample_value(
            "anomaly_queue_depth", {"model": "cancer", "version": "1"}) == 3
        with pytest.raises(OverloadedError) as info:
            batcher.submit(x[3:4], [0], 16)
        assert info.value.retry_after_s == 3.0
        await asyncio.gather(*pending)
        assert batcher.queued == 0
        await batcher.submit(x[3:4], [0], 16)  # room again
        await batcher.close()

    asyncio.run(run())


def test_items_with_different_mc_samples_are_not_mixed(scorer: Scorer,
                                                       bundles: TrainedBundles) -> None:
    x = _x(scorer, bundles, 6)

    async def run() -> tuple[list[float], float]:
        batcher, metrics = _batcher(scorer, max_queue_delay_us=50_000)
        futures = [batcher.submit(x[i:i + 1], [0], 8 if i % 2 else 32) for i in range(6)]
        results = await asyncio.gather(*futures)
        await batcher.close()
        assert [r.mc_samples for r in results] == [32, 8, 32, 8, 32, 8]
        return [float(r.scores[0]) for r in results], \
            float(metrics.batch_size.labels("cancer", "1").counts.sum())

    scores, calls = asyncio.run(run())
    assert calls == 2
    np.testing.assert_allclose(scores[0::2], scorer.score(x[0::2], mc_samples=32).scores,
                               RTOL, ATOL)
    np.testing.assert_allclose(scores[1::2], scorer.score(x[1::2], mc_samples=8).scores,
                               RTOL, ATOL)


def test_bad_input_fails_alone_and_close_drains(scorer: Scorer,
                                                bundles: TrainedBundles) -> None:
    x = _x(scorer, bundles, 3)

    async def run() -> None:
        batcher, _ = _batcher(scorer, max_queue_delay_us=50_000)
        good = [batcher.submit(x[i:i + 1], [0], 16) for i in range(3)]
        bad = x[:1].copy()
        bad[0, 0] = np.nan
        with pytest.raises(InputError, match="NaN"):
            batcher.submit(bad, [0], 16)
        with pytest.raises(InputError, match="shape"):
            batcher.submit(x[:, :5], [0, 0, 0], 16)
        await batcher.close()  # drains what is queued
        assert all(f.done() and not f.exception() for f in good)
        with pytest.raises(OverloadedError):
            batcher.submit(x[:1], [0], 16)

    asyncio.run(run())


def test_rows_are_encoded_per_batch_and_score_as_offline(scorer: Scorer,
                                                         bundles: TrainedBundles) -> None:
    """Row requests, alone or batched with preprocessed ones, get the scores that offline
    ``score_rows`` gives the same rows with the same seeds, in one onnxruntime call."""
    rows = bundles.cancer_rows[:8]
    x = _x(scorer, bundles, 8)

    async def run() -> tuple[list[float], np.ndarray]:
        batcher, metrics = _batcher(scorer, max_batch_size=64, max_queue_delay_us=50_000)
        futures = [batcher.submit_rows(rows[0:3], [7, 8, 9], 16),
                   batcher.submit(x[3:4], [10], 16),
                   batcher.submit_rows(rows[4:5], [11], 16),
                   batcher.submit_rows(rows[5:8], [12, 13, 14], 16)]
        results = await asyncio.gather(*futures)
        await batcher.close()
        return [float(s) for r in results for s in r.scores], _batch_sizes(metrics)

    scores, sizes = asyncio.run(run())
    offline = scorer.score_rows(rows, seeds=list(range(7, 15)))
    np.testing.assert_allclose(scores, offline.scores, RTOL, ATOL)
    assert sizes.sum() == 1  # one call for all four requests

    async def all_rows() -> list[float]:
        batcher, _ = _batcher(scorer, max_batch_size=64, max_queue_delay_us=50_000)
        results = await asyncio.gather(*(batcher.submit_rows(rows[i:i + 1], [7 + i], 16)
                                         for i in range(8)))
        await batcher.close()
        return [float(r.scores[0]) for r in results]

    np.testing.assert_allclose(asyncio.run(all_rows()), offline.scores, RTOL, ATOL)


def test_a_bad_row_fails_its_own_request_with_its_own_row_number(
        scorer: Scorer, bundles: TrainedBundles) -> None:
    rows = bundles.cancer_rows[:4]
    name = next(iter(rows[0]))
    bad = [dict(rows[2]), {**rows[3], name: "not a number"}]

    async def run() -> tuple[list[float], BaseException | None, ServiceMetrics]:
        batcher, metrics = _batcher(scorer, max_batch_size=64, max_queue_delay_us=50_000)
        good = [batcher.submit_rows(rows[i:i + 1], [i], 16) for i in range(2)]
        failing = batcher.submit_rows(bad, [2, 3], 16)
        later = batcher.submit_rows(rows[3:4], [3], 16)
        results = await asyncio.gather(*good, later)
        error = await asyncio.gather(failing, return_exceptions=True)
        with pytest.raises(InputError, match="no rows"):
            batcher.submit_rows([], [], 16)
        await batcher.close()
        return [float(r.scores[0]) for r in results], error[0], metrics

    scores, error, metrics = asyncio.run(run())
    assert isinstance(error, InputError)
    assert f"row 1: column '{name}'" in str(error)  # the row's index in its own request
    offline = scorer.score_rows([rows[0], rows[1], rows[3]], seeds=[0, 1, 3])
    np.testing.assert_allclose(scores, offline.scores, RTOL, ATOL)
    child = metrics.batch_size.labels("cancer", "1")
    assert child.counts.sum() == 1 and child.total == 3  # the good rows, in one call
