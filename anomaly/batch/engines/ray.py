"""The Ray engine: the same chunked scoring as :mod:`anomaly.batch.engines.local`, spread over
a Ray cluster with Ray Data. Needs the ``ray`` extra (``pip install 'vae-anomaly[ray]'``);
Ray is imported here only, and only when this engine runs.

Pipeline (streaming; Ray Data applies backpressure, so no stage holds the whole input)::

    from_items(files | image chunks)
      -> map_batches(read + prepare, tasks)   raw rows / image bytes -> graph input x
      -> map_batches(_ChunkScorer, actors)    one onnxruntime session per actor (a GPU each
                                              when the cluster has GPUs)
      -> write_parquet(.OUT.ray-*/)           result parts
    driver: parts, in input order -> OUT + rejects (anomaly.batch.sink.write_results)

Why not ``read_csv`` / ``read_parquet`` / ``read_images``: they number no rows (the output's
``row`` id), drop or fail on malformed lines instead of reporting them, and ``read_images``
decodes and resizes differently from the bundle's preprocessing and aborts on a corrupt file.
The read tasks here run the local engine's reader, so both engines read, reject and chunk
identically; actors score whole chunks, so scores are bit-identical to the local engine's.

Input files, the bundle and the output's folder must be on storage every node can read (a
local Ray, NFS, ...), and vae-anomaly installed on every node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from anomaly.batch.chunks import (
    ScoreSettings,
    chunk_ids,
    prepare_image_chunk,
    prepare_table_chunk,
    score_prepared,
)
from anomaly.batch.options import ScoreOptions, ScoreSummary
from anomaly.batch.plan import Plan, make_plan
from anomaly.batch.sink import (
    check_output_path,
    describe_reject,
    fail_on_bad_error,
    rejects_path,
    write_results,
)
from anomaly.batch.sources import is_csv
from anomaly.batch.stream import REJECT_COL, iter_table_chunks
from anomaly.bundle import ImageInput, TabularInput
from anomaly.errors import AnomalyError, MissingExtraError
from anomaly.inference import Scorer
from anomaly.preprocessing import ImagePreprocessor, TabularPreprocessor

log = logging.getLogger(__name__)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingExtraError("the Ray engine", "ray", "or use --engine local") from exc
    return ray


def run_ray(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
            out: str | os.PathLike[str], options: ScoreOptions) -> ScoreSummary:
    """Score ``source`` into ``out`` on Ray Data; see :func:`anomaly.batch.score_path`.

    Uses the Ray this process is already connected to, else ``options.ray_address``, else
    starts a local Ray (and stops it at the end)."""
    started = time.perf_counter()
    ray = _import_ray()
    target = check_output_path(out)
    bundle_path = Path(bundle).resolve()
    scorer = Scorer(bundle_path, providers=["CPUExecutionProvider"],
                    mc_samples=options.mc_samples)  # the driver only plans
    plan = _absolute(make_plan(scorer, source, options))
    settings = ScoreSettings(plan.layout, options.seed, scorer.mc_samples,
                             str(Path(options.heatmaps).resolve()) if options.heatmaps else None)
    started_ray = _connect(ray, options.ray_address)
    target.parent.mkdir(parents=True, exist_ok=True)
    parts = Path(tempfile.mkdtemp(prefix=f".{target.name}.ray-", dir=target.parent))
    try:
        try:
            with _data_context(ray, options.progress):  # read when the dataset is built
                dataset = _pipeline(ray, plan, scorer, settings, bundle_path, options, target)
                dataset.write_parquet(str(parts), ray_remote_args={"num_cpus": 0})
        except Exception as exc:  # Ray wraps errors raised in tasks and actors
            cause = _anomaly_cause(exc)
            if cause is None:
                raise
            raise type(cause)(str(cause)) from exc
        counts = write_results(_parts_in_order(parts, plan), target, plan.layout,
                               options.fail_on_bad, os.fspath(source))
    finally:
        shutil.rmtree(parts, ignore_errors=True)
        if started_ray:
            ray.shutdown()
    extra = [f"heat maps in {options.heatmaps}"] if options.heatmaps else []
    return ScoreSummary(target, counts.scored, counts.anomalies,
                        scorer.manifest.threshold.target_fpr, time.perf_counter() - started,
                        extra, counts.rejected,
                        rejects_path(target) if counts.rejected else None, 0, "ray")


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to Ray; True when this call started it (and so should stop it)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ... depending on the failure
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise AnomalyError(f"cannot start or reach {where}: {exc}") from exc
    return True


@contextlib.contextmanager
def _data_context(ray: Any, progress: bool) -> Iterator[None]:
    """Ray Data settings for this job, restored afterwards (the context is per process)."""
    ctx = ray.data.DataContext.get_current()
    logger = logging.getLogger("ray.data")
    saved = (ctx.execution_options.preserve_order, ctx.raise_original_map_exception,
             ctx.enable_progress_bars, logger.level)
    ctx.execution_options.preserve_order = True  # parts come out in input order
    ctx.raise_original_map_exception = True  # an InputError from an actor reaches us whole
    ctx.enable_progress_bars = progress
    if not progress:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        (ctx.execution_options.preserve_order, ctx.raise_original_map_exception,
         ctx.enable_progress_bars) = saved[:3]
        logger.setLevel(saved[3])


def _absolute(plan: Plan) -> Plan:
    """Workers do not share the driver's working directory."""
    return dataclasses.replace(plan, files=tuple(p.resolve() for p in plan.files),
                               root=plan.root.resolve() if plan.root else None)


def _pipeline(ray: Any, plan: Plan, scorer: Scorer, settings: ScoreSettings,
              bundle: Path, options: ScoreOptions, out: Path) -> Any:
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(int(resources.get("CPU", 1)), 1)
    schema = scorer.manifest.input
    if plan.kind == "image":
        items = [{"start": s, "names": list(plan.images[s : s + plan.chunk_rows])}
                 for s in range(0, len(plan.images), plan.chunk_rows)]
        reader: Any = _read_images
    else:
        items = [{"file_index": i} for i in range(len(plan.files))]
        reader = _read_tables
    # Readers reserve no CPU: they are light next to scoring, and a resource request unlike
    # the actors' keeps Ray from fusing them into the actors, so that chunks of one big file
    # are scored by all actors, not only by the one that reads it.
    prepared = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        reader, fn_kwargs={"plan": plan, "schema": schema}, batch_size=1,
        batch_format="pyarrow", num_cpus=0)
    if gpus:  # one actor per GPU, onnxruntime picks CUDA
        pool, per_actor = {"num_gpus": 1, "num_cpus": 1}, gpus
        providers, threads = options.providers, None
    else:  # one single-threaded onnxruntime session per CPU
        pool, per_actor = {"num_cpus": 1}, cpus
        providers, threads = options.providers or ["CPUExecutionProvider"], 1
    return prepared.map_batches(
        _ChunkScorer, batch_size=None, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=per_actor),
        fn_constructor_kwargs={"bundle": str(bundle), "settings": settings,
                               "chunk_rows": plan.chunk_rows, "providers": providers,
                               "threads": threads, "fail_on_bad": options.fail_on_bad,
                               "out": str(out)},
        **pool)


def _read_tables(batch: pa.Table, plan: Plan, schema: TabularInput) -> Iterator[pa.Table]:
    """Read task: one input file -> its prepared chunks (same reader as the local engine)."""
    prep = TabularPreprocessor(schema)
    for file_index in batch.column("file_index").to_pylist():
        path = plan.files[file_index]
        for raw in iter_table_chunks(path, file_index, list(plan.columns), plan.chunk_rows):
            yield prepare_table_chunk(prep, raw, plan.layout, is_csv(path))


def _read_images(batch: pa.Table, plan: Plan, schema: ImageInput) -> Iterator[pa.Table]:
    """Read task: one chunk of image files -> decoded (rejects for unreadable ones)."""
    assert plan.root is not None
    prep = ImagePreprocessor(schema)
    for start, names in zip(batch.column("start").to_pylist(),
                            batch.column("names").to_pylist(), strict=True):
        yield prepare_image_chunk(prep, plan.root, start, names)


class _ChunkScorer:
    """Ray actor: holds one onnxruntime session; scores each chunk of a batch as one unit,
    exactly as the local engine does (Ray may hand over several chunks in one block)."""

    def __init__(self, bundle: str, settings: ScoreSettings, chunk_rows: int,
                 providers: list[str] | None, threads: int | None, fail_on_bad: bool,
                 out: str) -> None:
        self.scorer = Scorer(bundle, providers=providers, mc_samples=settings.mc_samples,
                             intra_op_threads=threads)
        self.settings = settings
        self.chunk_rows = chunk_rows
        self.fail_on_bad = fail_on_bad
        self.out = Path(out)

    def __call__(self, batch: pa.Table) -> pa.Table:
        layout = self.settings.layout
        if batch.num_rows == 0:
            return layout.result_schema().empty_table()
        ids = chunk_ids(batch, layout, self.chunk_rows)  # (n,), ascending
        cuts = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), batch.num_rows]
        parts = [score_prepared(self.scorer, batch.slice(a, b - a), self.settings)
                 for a, b in itertools.pairwise(cuts)]
        result = pa.concat_tables(parts)
        if self.fail_on_bad:
            bad = result.filter(result.column(REJECT_COL).is_valid())
            if bad.num_rows:
                raise fail_on_bad_error(describe_reject(layout, bad), self.out)
        return result


def _parts_in_order(folder: Path, plan: Plan) -> Iterator[pa.Table]:
    """The result parts Ray wrote, in input order (the writer checks the order row by row)."""
    firsts = []
    for path in folder.rglob("*.parquet"):
        pf = pq.ParquetFile(path)
        if pf.metadata.num_rows:
            first = pf.read_row_group(0).slice(0, 1)
            firsts.append((int(plan.layout.sort_key(first)[0]), path))
    for _, path in sorted(firsts):
        pf = pq.ParquetFile(path)
        for group in range(pf.num_row_groups):
            table = pf.read_row_group(group)
            yield table.cast(plan.layout.result_schema())


def _anomaly_cause(exc: BaseException) -> AnomalyError | None:
    """The product error behind a Ray error (raised in a task or actor), if there is one."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, AnomalyError) and type(e).__module__.startswith("anomaly."):
            return e  # not Ray's wrapper class that also derives from it
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None

