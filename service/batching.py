"""Dynamic batching, as Triton's ``dynamic_batching`` block: requests to one model version
queue here and are coalesced into one onnxruntime call of at most ``max_batch_size`` samples;
the oldest request waits at most ``max_queue_delay`` for the batch to fill.

Why it is safe: a sample's latent noise comes only from its own seed
(:func:`anomaly.inference.noise.latent_noise`), so its score does not depend on its batch mates.
Why it is bounded: at most ``max_queue_size`` samples wait; beyond that :meth:`submit` raises
:class:`~service.errors.OverloadedError` (503 + Retry-After) instead of growing memory.
onnxruntime runs on this batcher's own thread pool (``instances`` threads), never on the
event loop. Rows posted as JSON are queued as they came and encoded there too, once per batch
(:meth:`DynamicBatcher.submit_rows`): one numpy pass for the batch instead of three calls per
request on the event loop, which is what bounds a single-row request's throughput; a request
whose rows do not encode fails alone with the message it would get encoded on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from anomaly.errors import AnomalyError, InputError
from anomaly.inference import Scorer, ScoreResult
from anomaly.preprocessing import all_finite
from service.config import Settings
from service.errors import OverloadedError
from service.metrics import VersionMetrics

log = logging.getLogger("service.batching")


@dataclass(frozen=True)
class BatchConfig:
    """Knobs of one batcher, times in seconds and sizes in samples; made from the service's
    :class:`~service.config.Settings`, which hold the defaults."""

    enabled: bool
    max_batch_size: int
    max_queue_delay_s: float
    max_queue_size: int
    instances: int
    retry_after_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> BatchConfig:
        return cls(enabled=s.dynamic_batching, max_batch_size=s.max_batch_size,
                   max_queue_delay_s=s.max_queue_delay_us / 1e6,
                   max_queue_size=s.max_queue_size, instances=s.instances,
                   retry_after_s=float(s.retry_after_s))


class _Item:
    """One request in the queue: n samples that stay together, as preprocessed ``x`` or as
    raw ``rows`` that the batch encodes."""

    __slots__ = ("enqueued", "future", "mc_samples", "n", "rows", "seeds", "x")

    def __init__(self, x: np.ndarray | None, rows: Sequence[Any] | None, n: int,
                 seeds: list[int], mc_samples: int,
                 future: asyncio.Future[ScoreResult]) -> None:
        self.x = x  # (n, D) float32, or None for rows
        self.rows = rows  # n row objects, or None for x
        self.seeds = seeds  # (n,)
        self.mc_samples = mc_samples
        self.n = n
        self.future = future
        self.enqueued = time.perf_counter()


@dataclass(frozen=True)
class _Ran:
    """What one batch's executor call gives back: the scored items in order and their
    result (None when none could be encoded), the items that failed, the seconds taken."""

    items: list[_Item]
    failed: list[tuple[_Item, Exception]]
    result: ScoreResult | None
    input_s: float
    infer_s: float


class Admission:
    """One admitted request's hold on queue capacity (see :meth:`DynamicBatcher.admit`):
    released when it submits its samples, or by :meth:`close` when it fails before."""

    __slots__ = ("_batcher", "_open")

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher
        self._open = True

    def submit(self, x: np.ndarray, seeds: Sequence[int], mc_samples: int
               ) -> asyncio.Future[ScoreResult]:
        """:meth:`DynamicBatcher.submit`, in place of the capacity held."""
        self.close()
        return self._batcher.submit(x, seeds, mc_samples)

    def submit_rows(self, rows: Sequence[Any], seeds: Sequence[int], mc_samples: int
                    ) -> asyncio.Future[ScoreResult]:
        """:meth:`DynamicBatcher.submit_rows`, in place of the capacity held."""
        self.close()
        return self._batcher.submit_rows(rows, seeds, mc_samples)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._batcher._admitted -= 1


class DynamicBatcher:
    """The queue and the onnxruntime calls of one model version. Use from one event loop."""

    def __init__(self, scorer: Scorer, config: BatchConfig, metrics: VersionMetrics,
                 label: str) -> None:
        self.scorer = scorer
        self.config = config
        self.metrics = metrics
        self.label = label
        self._items: deque[_Item] = deque()
        self._queued = 0  # samples in self._items
        self._admitted = 0  # requests admitted that have not submitted yet
        self._in_flight = 0  # onnxruntime calls running
        # set when the batcher should look again: the first item arrived, the batch is full,
        # or the oldest item's delay ran out
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set when nothing is queued or running
        self._idle.set()
        self._slots = asyncio.Semaphore(config.instances)
        self._executor = ThreadPoolExecutor(max_workers=config.instances,
                                            thread_name_prefix=f"ort-{label}")
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # batches in onnxruntime now
        self._closed = False
        # read at scrape time (on the event loop), so submit() pays nothing for the gauge
        metrics.queue_depth.set_function(lambda: self._queued)

    # --- public -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name=f"batcher-{self.label}")

    @property
    def queued(self) -> int:
        """Samples waiting now."""
        return self._queued

    def admit(self) -> Admission:
        """Let a request in before its body is read, or raise OverloadedError at once.

        Why: a request shed only when it submits has already waited for its body, been parsed
        and preprocessed, behind every other request of a burst; its 503 then takes as long
        as the work it avoids. So a request is admitted first, holding one sample of queue
        capacity until it submits its real samples (:meth:`Admission.submit`) or fails:
        queued samples plus admitted requests never exceed ``max_queue_size``."""
        if self._queued + self._admitted >= self.config.max_queue_size:
            raise self._overloaded()
        self._admitted += 1
        return Admission(self)

    def _overloaded(self) -> OverloadedError:
        return OverloadedError(
            f"model {self.label} has {self._queued} samples queued and {self._admitted} "
            f"requests being read (limit {self.config.max_queue_size}); retry after a short "
            "wait", self.config.retry_after_s)

    def submit(self, x: np.ndarray, seeds: Sequence[int], mc_samples: int
               ) -> asyncio.Future[ScoreResult]:
        """Queue x (n, D) float32 with one seed per row; the future resolves to the rows'
        :class:`ScoreResult`. Raises OverloadedError when the queue is full."""
        if x.ndim != 2 or x.shape[1] != self.scorer.input_dim or x.shape[0] == 0:
            raise InputError(f"expected input of shape (batch >= 1, {self.scorer.input_dim}), "
                             f"got {tuple(x.shape)}")
        if not all_finite(x):  # checked here so one caller cannot fail a whole batch
            raise InputError("input contains NaN or infinite values")
        return self._enqueue(x, None, int(x.shape[0]), seeds, mc_samples)

    def submit_rows(self, rows: Sequence[Any], seeds: Sequence[int], mc_samples: int
                    ) -> asyncio.Future[ScoreResult]:
        """Queue raw tabular rows (what :meth:`TabularPreprocessor.encode_rows` takes), to be
        encoded with the rest of their batch on the onnxruntime thread; the future fails
        with the InputError that encoding these rows alone raises."""
        self.scorer.tabular  # noqa: B018 - InputError at once for an image model
        if not rows:
            raise InputError("no rows given: send at least one row")
        return self._enqueue(None, rows, len(rows), seeds, mc_samples)

    def _enqueue(self, x: np.ndarray | None, rows: Sequence[Any] | None, n: int,
                 seeds: Sequence[int], mc_samples: int) -> asyncio.Future[ScoreResult]:
        if self._closed:  # the repository's leases make this unreachable; belt and braces
            raise OverloadedError(f"model {self.label} is being unloaded; retry",
                                  self.config.retry_after_s)
        if len(seeds) != n:
            raise InputError(f"got {len(seeds)} seeds for {n} samples")
        if self._queued and self._queued + n > self.config.max_queue_size:
            raise self._overloaded()
        future: asyncio.Future[ScoreResult] = asyncio.get_running_loop().create_future()
        self._items.append(_Item(x, rows, n, list(seeds), mc_samples, future))
        self._queued += n
        self._idle.clear()
        if self._queued == n or self._queued >= self.config.max_batch_size:
            self._wake.set()  # not on every arrival: the batcher would wake once per request
        return future

    async def close(self) -> None:
        """Finish what is queued and running, then stop (used after a model swap)."""
        self._closed = True
        await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                while not self._items:
                    self._wake.clear()
                    await self._wake.wait()
                await self._fill()
                batch = self._take()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                self._update_idle()
                continue
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._running.discard)

    async def _fill(self) -> None:
        """Wait until the batch is full or the oldest item has waited max_queue_delay (one
        timer per batch, woken early by submit() when the batch fills)."""
        cfg = self.config
        if not cfg.enabled or cfg.max_queue_delay_s <= 0 or self._queued >= cfg.max_batch_size:
            return
        remaining = self._items[0].enqueued + cfg.max_queue_delay_s - time.perf_counter()
        if remaining <= 0:
            return
        self._wake.clear()
        timer = asyncio.get_running_loop().call_later(remaining, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    def _take(self) -> list[_Item]:
        """Pop the next batch: the oldest item, then later items with the same number of MC
        samples while they fit (an item larger than max_batch_size runs alone). Items whose
        caller has gone away are dropped."""
        cfg = self.config
        batch: list[_Item] = []
        size = 0
        rest: deque[_Item] = deque()
        limit = cfg.max_batch_size if cfg.enabled else 1
        while self._items:
            item = self._items.popleft()
            if item.future.done():  # cancelled: the client disconnected
                self._queued -= item.n
                continue
            fits = not batch or (item.mc_samples == batch[0].mc_samples
                                 and size + item.n <= cfg.max_batch_size)
            if fits:
                batch.append(item)
                size += item.n
                self._queued -= item.n
                if size >= cfg.max_batch_size or len(batch) >= limit:
                    break
            else:
                rest.append(item)
        rest.extend(self._items)
        self._items = rest
        return batch

    async def _execute(self, batch: list[_Item]) -> None:
        try:
            started = time.perf_counter()
            counts = np.array([it.n for it in batch])
            waits = np.array([started - it.enqueued for it in batch])
            self.metrics.queue_wait.observe_many(np.repeat(waits, counts))  # one per sample
            try:
                ran = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run_batch, batch)
            except Exception as exc:  # AnomalyError: the callers'; else onnxruntime failed
                if not isinstance(exc, AnomalyError):
                    log.exception("onnxruntime call failed for %s", self.label)
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(exc)
                return
            returned = time.perf_counter()
            for it, error in ran.failed:
                if not it.future.done():
                    it.future.set_exception(error)
            result = ran.result
            if result is None:  # no item of the batch encoded
                return
            samples = len(result)
            self.metrics.batch_size.observe(float(samples))
            # the score, p-value and anomaly metrics once per batch, not once per request
            self.metrics.scored(result.scores, result.p_values, result.is_anomaly)
            start = 0
            for it in ran.items:
                stop = start + it.n
                if not it.future.done():
                    it.future.set_result(_slice(result, start, stop))
                start = stop
            self.metrics.stats.execution(samples, len(ran.items), float(waits.sum()),
                                         ran.input_s, ran.infer_s,
                                         time.perf_counter() - returned)
        finally:
            self._in_flight -= 1
            self._slots.release()
            self._update_idle()

    def _run_batch(self, batch: list[_Item]) -> _Ran:
        """On the executor thread: the batch's inputs, then its scores."""
        t0 = time.perf_counter()
        items, failed, x = self._encode(batch)
        if not items:
            return _Ran([], failed, None, time.perf_counter() - t0, 0.0)
        if x is None:
            x = items[0].x if len(items) == 1 else np.concatenate([it.x for it in items])
        seeds = items[0].seeds if len(items) == 1 else [s for it in items for s in it.seeds]
        t1 = time.perf_counter()
        assert x is not None
        result = self.scorer.score(x, seeds, batch[0].mc_samples)
        return _Ran(items, failed, result, t1 - t0, time.perf_counter() - t1)

    def _encode(self, batch: list[_Item]
                ) -> tuple[list[_Item], list[tuple[_Item, Exception]], np.ndarray | None]:
        """Sets ``x`` of every row item, encoding the rows of all of them in one call; when
        that call finds a bad row, each item is encoded alone, so a request's error names its
        own row and fails that request only. Returns the items that have x, in batch order,
        and the ones that failed with their errors; and x of the whole batch when one call
        encoded all of it (the usual case: every request posted rows)."""
        pending = [(it, it.rows) for it in batch if it.rows is not None and it.x is None]
        if not pending:
            return batch, [], None
        prep = self.scorer.tabular
        try:
            x = prep.encode_rows(pending[0][1] if len(pending) == 1
                                 else [r for _, rows in pending for r in rows])  # (n, D)
        except InputError:
            pass
        else:
            start = 0
            for it, _ in pending:
                it.x = x[start:start + it.n]
                start += it.n
            return batch, [], (x if len(pending) == len(batch) else None)
        failed: list[tuple[_Item, Exception]] = []
        for it, rows in pending:
            try:
                it.x = prep.encode_rows(rows)
            except InputError as exc:
                failed.append((it, exc))
        return [it for it in batch if it.x is not None], failed, None

    def _update_idle(self) -> None:
        if not self._items and self._in_flight == 0:
            self._idle.set()


def _slice(result: ScoreResult, start: int, stop: int) -> ScoreResult:
    """Rows start:stop of a batch's result (views, no copies; explanations stay lazy)."""
    return result.rows(start, stop)
