"""The local batch engine: stream the input chunk by chunk through one onnxruntime session.

The calling thread reads and prepares chunks while worker threads score the ones before
(onnxruntime releases the GIL): on CPU, one single-threaded ``run`` per worker and one worker
per core but the reader's. Measured on 2 shared cores, that beats one ``run`` at a time with
onnxruntime's own intra-op threads by ~1.5x (this model's matrices are too small for them).

Memory is bounded by the chunks in flight (workers + 1, plus the CSV parser's block), not by
the input: results are stored chunk by chunk, in order, in the run's partial folder
(:mod:`anomaly.batch.checkpoint`), and the output is assembled from those at the end
(:func:`anomaly.batch.sink.write_results`), so an interrupted run can ``--resume``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from anomaly.batch.checkpoint import PartialRun
from anomaly.batch.chunks import ScoreSettings, score_prepared
from anomaly.batch.options import ScoreOptions, ScoreSummary
from anomaly.batch.plan import Plan, make_plan
from anomaly.batch.sink import (
    check_output_path,
    describe_reject,
    fail_on_bad_error,
    rejects_path,
    write_results,
)
from anomaly.batch.stream import REJECT_COL, estimate_rows
from anomaly.errors import InputError
from anomaly.inference import Scorer, choose_providers
from anomaly.progress import bar_options

log = logging.getLogger(__name__)


def run_local(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
              out: str | os.PathLike[str], options: ScoreOptions) -> ScoreSummary:
    """Score ``source`` into ``out`` in this process; see :func:`anomaly.batch.score_path`."""
    started = time.perf_counter()
    target = check_output_path(out)
    on_cpu = choose_providers(options.providers)[0] == "CPUExecutionProvider"
    scorer = Scorer(bundle, providers=options.providers, mc_samples=options.mc_samples,
                    intra_op_threads=1 if on_cpu else None)
    plan = make_plan(scorer, source, options)
    settings = ScoreSettings(plan.layout, options.seed, options.mc_samples,
                             os.fspath(options.heatmaps) if options.heatmaps else None)
    partial = PartialRun(target, plan.job(scorer, options), options.resume)
    resumed = partial.rows_done() if partial.done else 0
    try:
        _score_chunks(scorer, plan, settings, partial, options, target)
        counts = write_results(partial.tables(), target, plan.layout, options.fail_on_bad,
                               os.fspath(source))
    except InputError:
        partial.remove()  # the input itself is at fault: resuming would fail the same way
        raise
    except BaseException:
        partial.close()
        if partial.done:
            log.warning("stopped after %d chunks; run the same command with --resume to "
                        "continue from there", partial.done)
        raise
    partial.remove()
    extra = [f"heat maps in {options.heatmaps}"] if options.heatmaps else []
    return ScoreSummary(target, counts.scored, counts.anomalies,
                        scorer.manifest.threshold.target_fpr, time.perf_counter() - started,
                        extra, counts.rejected,
                        rejects_path(target) if counts.rejected else None, resumed, "local")


def _workers(scorer: Scorer, options: ScoreOptions) -> int:
    """Scoring threads: one per core but the reader's on CPU; one for a GPU (it parallelises
    inside), and one with heat maps (matplotlib is not thread-safe)."""
    if options.heatmaps or scorer.provider != "CPUExecutionProvider":
        return 1
    return max((os.cpu_count() or 1) - 1, 1)


def _score_chunks(scorer: Scorer, plan: Plan, settings: ScoreSettings, partial: PartialRun,
                  options: ScoreOptions, target: Path) -> None:
    """Score every chunk not yet in ``partial`` and commit it there, in order."""
    image = plan.kind == "image"
    total = len(plan.images) if image else sum(estimate_rows(p) for p in plan.files)
    workers = _workers(scorer, options)
    in_flight: deque[tuple[int, int, Future[pa.Table]]] = deque()  # (index, rows, result)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="anomaly-score")
    try:
        with tqdm(total=total, unit="img" if image else "row", desc="scoring", smoothing=0.1,
                  disable=not options.progress, **bar_options()) as bar:

            def commit_until(left: int) -> None:
                while len(in_flight) > left:
                    index, rows, future = in_flight.popleft()
                    result = future.result()
                    if options.fail_on_bad:
                        _stop_at_first_reject(plan, result, target)
                    partial.commit(index, result)
                    bar.update(rows)

            for index, rows, prepared in plan.prepared_chunks(scorer, skip=partial.done):
                if prepared is None:  # done by an earlier run
                    bar.update(rows)
                    continue
                in_flight.append((index, rows,
                                  pool.submit(score_prepared, scorer, prepared, settings)))
                commit_until(workers)  # at most `workers` chunks scored at a time
            commit_until(0)
            bar.total = bar.n  # CSV totals are estimates
            bar.refresh()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_at_first_reject(plan: Plan, result: pa.Table, target: Path) -> None:
    bad = result.filter(result.column(REJECT_COL).is_valid())
    if bad.num_rows:
        raise fail_on_bad_error(describe_reject(plan.layout, bad), target)
