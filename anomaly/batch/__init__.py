"""Batch scoring of files: CSV/Parquet files (or a glob of them) or an image folder, streamed
chunk by chunk through a bundle into a CSV/Parquet output, resumable, on either engine.

Output columns: the id (``--id-column``, else ``row``; the relative ``path`` for images; plus
``file`` when a glob matched several files), ``score``, ``p_value``, ``is_anomaly``, then
``topK_column``/``topK_score`` with ``explain``. Rows that cannot be scored go to
``<out>.rejects.csv`` with the reason. Modules: ``sources`` (which files; reading one whole),
``stream`` (a table file in fixed-size chunks), ``plan`` (the resolved job), ``chunks`` (one
chunk in, one result table out), ``sink`` (the output files), ``checkpoint`` (resume state),
``engines`` (local, Ray).
"""

from __future__ import annotations

import os

from anomaly.batch.chunks import result_columns
from anomaly.batch.options import ScoreOptions, ScoreSummary
from anomaly.batch.sink import check_output_path, write_table
from anomaly.errors import InputError

__all__ = ["ScoreOptions", "ScoreSummary", "check_output_path", "result_columns", "score_path",
           "write_table"]


def score_path(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
               out: str | os.PathLike[str], options: ScoreOptions | None = None) -> ScoreSummary:
    """Score ``source`` (a table file, a glob of them, or an image folder) into ``out``."""
    options = options or ScoreOptions()
    check_output_path(out)
    if options.engine == "ray":
        if options.resume:
            raise InputError("--resume works with the local engine; a Ray job retries failed "
                             "tasks itself and reruns from the start if the driver dies")
        from anomaly.batch.engines.ray import run_ray

        return run_ray(bundle, source, out, options)
    if options.engine != "local":
        raise InputError(f"unknown engine '{options.engine}': use local or ray")
    if options.ray_address:
        raise InputError("--ray-address needs --engine ray")
    from anomaly.batch.engines.local import run_local

    return run_local(bundle, source, out, options)
