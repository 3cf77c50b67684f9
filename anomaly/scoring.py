"""Score CSV/Parquet files (or a glob of them) or an image folder with a bundle: the entry point
of ``anomaly score``.

Output columns: the id (``--id-column``, else ``row``; the relative ``path`` for images; plus
``file`` when a glob matched several files), ``score``, ``p_value``, ``is_anomaly``, then
``topK_column``/``topK_score`` with ``explain``. Rows that cannot be scored go to
``<out>.rejects.csv`` with the reason. The input is streamed in chunks; the output is written
to a temporary file and renamed, so it is never half-written, and an interrupted run can
resume. Two engines: ``local`` (:mod:`anomaly.batch`) and ``ray`` (:mod:`anomaly.ray_engine`,
Ray Data, for more than one machine).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from anomaly.chunks import result_columns
from anomaly.errors import InputError
from anomaly.output import check_output_path
from anomaly.plan import ScoreOptions, ScoreSummary

__all__ = ["ScoreOptions", "ScoreSummary", "check_output_path", "result_columns", "score_path",
           "write_table_atomic"]


def score_path(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
               out: str | os.PathLike[str], options: ScoreOptions | None = None) -> ScoreSummary:
    """Score ``source`` (a table file, a glob of them, or an image folder) into ``out``."""
    options = options or ScoreOptions()
    check_output_path(out)
    if options.engine == "ray":
        if options.resume:
            raise InputError("--resume works with the local engine; a Ray job retries failed "
                             "tasks itself and reruns from the start if the driver dies")
        from anomaly.ray_engine import run_ray

        return run_ray(bundle, source, out, options)
    if options.engine != "local":
        raise InputError(f"unknown engine '{options.engine}': use local or ray")
    if options.ray_address:
        raise InputError("--ray-address needs --engine ray")
    from anomaly.batch import run_local

    return run_local(bundle, source, out, options)


def write_table_atomic(table: pa.Table, out: str | os.PathLike[str]) -> Path:
    """Write CSV or Parquet (by extension) via a temporary file in the same folder + rename."""
    target = check_output_path(out)
    suffix = target.suffix.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            pacsv.write_csv(table, tmp_name)
        else:
            pq.write_table(table, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
