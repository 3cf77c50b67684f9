"""The local batch engine: stream the input chunk by chunk through one onnxruntime session.

Memory is bounded by one chunk (plus the CSV parser's block), not by the input: chunks are
prepared, scored and stored one at a time in the run's partial folder
(:mod:`anomaly.checkpoint`), and the output is assembled from those at the end
(:func:`anomaly.output.write_results`), so an interrupted run can ``--resume``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from anomaly.checkpoint import PartialRun
from anomaly.chunks import ScoreSettings, score_prepared
from anomaly.errors import InputError
from anomaly.output import (
    check_output_path,
    describe_reject,
    fail_on_bad_error,
    rejects_path,
    write_results,
)
from anomaly.plan import Plan, ScoreOptions, ScoreSummary, make_plan
from anomaly.scorer import Scorer
from anomaly.tables import REJECT_COL, estimate_rows

log = logging.getLogger(__name__)


def run_local(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
              out: str | os.PathLike[str], options: ScoreOptions) -> ScoreSummary:
    """Score ``source`` into ``out`` in this process; see :func:`anomaly.scoring.score_path`."""
    started = time.perf_counter()
    target = check_output_path(out)
    scorer = Scorer(bundle, providers=options.providers, mc_samples=options.mc_samples)
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


def _score_chunks(scorer: Scorer, plan: Plan, settings: ScoreSettings, partial: PartialRun,
                  options: ScoreOptions, target: Path) -> None:
    """Score every chunk not yet in ``partial`` and commit it there."""
    image = plan.kind == "image"
    total = len(plan.images) if image else sum(estimate_rows(p) for p in plan.files)
    with tqdm(total=total, unit="img" if image else "row", desc="scoring", smoothing=0.1,
              disable=not options.progress, dynamic_ncols=True) as bar:
        for index, rows, prepared in plan.prepared_chunks(scorer, skip=partial.done):
            if prepared is not None:
                result = score_prepared(scorer, prepared, settings)
                if options.fail_on_bad:
                    _stop_at_first_reject(plan, result, target)
                partial.commit(index, result)
            bar.update(rows)
        bar.total = bar.n  # CSV totals are estimates
        bar.refresh()


def _stop_at_first_reject(plan: Plan, result: pa.Table, target: Path) -> None:
    bad = result.filter(result.column(REJECT_COL).is_valid())
    if bad.num_rows:
        raise fail_on_bad_error(describe_reject(plan.layout, bad), target)
