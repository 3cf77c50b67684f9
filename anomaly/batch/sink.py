"""The shape of batch-scoring results, and the sink that writes them into the user's files.

Both engines produce *result tables* in one internal layout (keys, optional id, score columns,
``__reject``), chunk by chunk. :class:`ResultSink` streams them, in key order, into

* ``OUT`` (CSV or Parquet by extension): the scored rows, with the input's id (``--id-column``,
  else ``row``; ``path`` for images; plus ``file`` when a glob matched several files), then
  ``score`` (and ``score_se`` with ``--score-se``), ``p_value``, ``is_anomaly`` and
  ``topK_column``/``topK_score`` with ``--explain``;
* ``OUT-stem.rejects.csv`` beside it: the rows that could not be scored, with the reason.

Both are written to temporary files and renamed at the end, the output last, so a reader
never sees half of either. The bytes depend only on the rows, never on how they were chunked
on the way in: Parquet row groups are cut at fixed row counts here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from anomaly._fs import AtomicFile, atomic_path
from anomaly.batch.stream import FILE_COL, REJECT_COL, ROW_COL
from anomaly.errors import InputError

INDEX_COL = "__index"  # int64: position of an image in the job's sorted image list
PATH_COL = "__path"  # string: image path relative to the input folder
LABEL_COL = "label"  # the output column holding the input's label (``anomaly evaluate``)

#: Rows per Parquet row group in the output (and per write of the CSV writer).
OUTPUT_ROWS = 65536


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """Fail before any work if the output's format cannot be told from its extension."""
    target = Path(out)
    if target.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise InputError(f"output {target} must end in .csv or .parquet")
    if target.is_dir():
        raise InputError(f"output {target} is a folder; give a file name ending in .csv")
    return target


def rejects_path(out: Path) -> Path:
    """Where the rows that could not be scored go: ``scores.csv`` -> ``scores.rejects.csv``."""
    return out.with_name(f"{out.stem}.rejects.csv")


@dataclass(frozen=True)
class ResultLayout:
    """Column layout of result tables for one job.

    ``id_type`` is the Arrow type of ``id_column`` (binary input columns become strings);
    ``label_column`` (tables, for ``anomaly evaluate``) is carried into the output as the
    text column ``label``, beside the scores. ``explain`` is the number of top-K attribution
    column pairs (0 for images); ``score_se`` adds each score's Monte Carlo standard error.
    """

    kind: Literal["tabular", "image"]
    file_names: tuple[str, ...] = ()  # tables: the input files, as named in the output
    id_column: str | None = None
    id_type: pa.DataType | None = None  # None: string
    explain: int = 0
    label_column: str | None = None
    score_se: bool = False  # a ``score_se`` column (Monte Carlo standard error, nats)

    @property
    def multi_file(self) -> bool:
        return len(self.file_names) > 1

    def key_fields(self) -> list[pa.Field]:
        if self.kind == "image":
            return [pa.field(INDEX_COL, pa.int64()), pa.field(PATH_COL, pa.string())]
        return [pa.field(FILE_COL, pa.int32()), pa.field(ROW_COL, pa.int64())]

    def score_fields(self) -> list[pa.Field]:
        fields = [pa.field("score", pa.float64())]
        if self.score_se:
            fields.append(pa.field("score_se", pa.float64()))
        fields += [pa.field("p_value", pa.float64()), pa.field("is_anomaly", pa.bool_())]
        for k in range(1, self.explain + 1):
            fields += [pa.field(f"top{k}_column", pa.string()),
                       pa.field(f"top{k}_score", pa.float64())]
        return fields

    def id_fields(self) -> list[pa.Field]:
        if not self.id_column:
            return []
        return [pa.field(self.id_column, self.id_type or pa.string())]

    def label_fields(self) -> list[pa.Field]:
        return [pa.field(LABEL_COL, pa.string())] if self.label_column else []

    def carried_fields(self) -> list[pa.Field]:
        """Fields copied from the input to the output: the id, then the label."""
        return [*self.id_fields(), *self.label_fields()]

    def carried_sources(self) -> list[tuple[str, pa.Field]]:
        """(input column, output field) of each carried field."""
        sources = [(f.name, f) for f in self.id_fields()]
        if self.label_column:
            sources.append((self.label_column, self.label_fields()[0]))
        return sources

    def result_schema(self) -> pa.Schema:
        """Internal: keys, id, label, score columns, reject reason (null for scored rows)."""
        return pa.schema([*self.key_fields(), *self.carried_fields(), *self.score_fields(),
                          pa.field(REJECT_COL, pa.string())])

    def output_schema(self) -> pa.Schema:
        if self.kind == "image":
            ids = [pa.field("path", pa.string())]
        else:
            ids = self.id_fields() or [pa.field("row", pa.int64())]
            if self.multi_file:
                ids.insert(0, pa.field("file", pa.string()))
            ids += self.label_fields()
        return pa.schema([*ids, *self.score_fields()])

    def rejects_schema(self) -> pa.Schema:
        if self.kind == "image":
            ids = [pa.field("path", pa.string())]
        else:
            ids = [pa.field("row", pa.int64()), *self.id_fields()]
            if self.multi_file:
                ids.insert(0, pa.field("file", pa.string()))
        return pa.schema([*ids, pa.field("reason", pa.string())])

    def sort_key(self, result: pa.Table) -> np.ndarray:
        """(n,) int64 that orders result rows as the input: image index, or file and row."""
        if self.kind == "image":
            return np.asarray(result.column(INDEX_COL), dtype=np.int64)
        files = np.asarray(result.column(FILE_COL), dtype=np.int64)
        return (files << 40) + np.asarray(result.column(ROW_COL), dtype=np.int64)

    def split(self, result: pa.Table) -> tuple[pa.Table, pa.Table]:
        """A result table -> (output rows, rejects rows), in the user-facing layouts."""
        rejected = result.column(REJECT_COL).is_valid()
        scored, bad = result.filter(pc.invert(rejected)), result.filter(rejected)
        return (self._project(scored, self.output_schema()),
                self._project(bad, self.rejects_schema()))

    def _project(self, table: pa.Table, schema: pa.Schema) -> pa.Table:
        cols: list[Any] = []
        for name in schema.names:
            if name == "file":
                names = pa.array(self.file_names, pa.string())
                cols.append(names.take(table.column(FILE_COL)))
            elif name == "row":
                cols.append(table.column(ROW_COL))
            elif name == "path":
                cols.append(table.column(PATH_COL))
            elif name == "reason":
                cols.append(table.column(REJECT_COL))
            else:
                cols.append(table.column(name))
        return pa.Table.from_arrays(cols, schema=schema)


@dataclass
class Counts:
    scored: int = 0
    anomalies: int = 0
    rejected: int = 0
    first_reject: str | None = None  # "row 7 of data.csv: <reason>", for --fail-on-bad


def describe_reject(layout: ResultLayout, result: pa.Table) -> str:
    """The first row of a result table, rejected, as "row 7 of data.csv: <reason>"."""
    row = result.slice(0, 1).to_pylist()[0]
    if layout.kind == "image":
        return f"{row[PATH_COL]}: {row[REJECT_COL]}"
    where = f" of {layout.file_names[row[FILE_COL]]}" if layout.file_names else ""
    ident = f" ({layout.id_column} {row[layout.id_column]!r})" if layout.id_column else ""
    return f"row {row[ROW_COL]}{where}{ident}: {row[REJECT_COL]}"


def fail_on_bad_error(first_reject: str, out: Path) -> InputError:
    return InputError(f"{first_reject}; stopped by --fail-on-bad, nothing was written "
                      f"(without it, bad rows go to {rejects_path(out)} and the run goes on)")


def write_results(tables: Iterable[pa.Table], out: Path, layout: ResultLayout,
                  fail_on_bad: bool = False, source: str = "the input") -> Counts:
    """Stream result tables (in input order) into the output and rejects files. An input
    without a single row is an error, not an empty output."""
    with ResultSink(out, layout) as sink:
        for table in tables:
            sink.write(table)
            if fail_on_bad and sink.counts.first_reject is not None:
                raise fail_on_bad_error(sink.counts.first_reject, out)
        if sink.counts.scored + sink.counts.rejected == 0:
            raise InputError(f"nothing to score: {source} has no data rows, only a header")
        return sink.commit()


class ResultSink:
    """Streams result tables (in key order) into the output and rejects files.

    Use as a context manager: leaving it with an exception removes the temporary files and
    leaves any earlier output untouched; :meth:`commit` renames them into place.
    """

    def __init__(self, out: Path, layout: ResultLayout) -> None:
        self.out = check_output_path(out)
        self.layout = layout
        self.rejects = rejects_path(self.out)
        self.counts = Counts()
        self._tmp_out = AtomicFile(self.out)
        self._tmp_rejects: AtomicFile | None = None  # created with the first reject
        schema = layout.output_schema()
        self._writer: pq.ParquetWriter | pacsv.CSVWriter = (
            pacsv.CSVWriter(self._tmp_out.path, schema) if self.out.suffix.lower() == ".csv"
            else pq.ParquetWriter(self._tmp_out.path, schema))
        self._rejects_writer: pacsv.CSVWriter | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._last_key = -1

    def __enter__(self) -> ResultSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, result: pa.Table) -> None:
        """Append one result table; keys must continue ascending from the previous one."""
        if result.num_rows == 0:
            return
        self._check_order(result)
        scored, bad = self.layout.split(result)
        self.counts.scored += scored.num_rows
        self.counts.anomalies += int(pc.sum(scored.column("is_anomaly")).as_py() or 0)
        if bad.num_rows:
            if self.counts.first_reject is None:
                self.counts.first_reject = describe_reject(
                    self.layout, result.filter(result.column(REJECT_COL).is_valid()))
            self.counts.rejected += bad.num_rows
            if self._rejects_writer is None:
                self._tmp_rejects = AtomicFile(self.rejects)
                self._rejects_writer = pacsv.CSVWriter(self._tmp_rejects.path,
                                                       self.layout.rejects_schema())
            self._rejects_writer.write_table(bad)
        if scored.num_rows:
            self._buffer.append(scored)
            self._buffered += scored.num_rows
            while self._buffered >= OUTPUT_ROWS:
                self._flush(OUTPUT_ROWS)

    def commit(self) -> Counts:
        """Finish both files and rename them into place (rejects first, output last); a
        stale rejects file from an earlier run of the same output is removed."""
        while self._buffered:
            self._flush(min(self._buffered, OUTPUT_ROWS))
        self._writer.close()
        if self._rejects_writer is not None and self._tmp_rejects is not None:
            self._rejects_writer.close()
            self._tmp_rejects.commit()
        else:
            self.rejects.unlink(missing_ok=True)
        self._tmp_out.commit()
        return self.counts

    def abort(self) -> None:
        for writer in (self._writer, self._rejects_writer):
            try:
                if writer is not None:
                    writer.close()
            except Exception:  # already failing: the temporary files go regardless
                pass
        self._tmp_out.abort()
        if self._tmp_rejects is not None:
            self._tmp_rejects.abort()

    def _flush(self, rows: int) -> None:
        merged = pa.concat_tables(self._buffer)
        self._writer.write_table(merged.slice(0, rows))
        rest = merged.slice(rows)
        self._buffer, self._buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def _check_order(self, result: pa.Table) -> None:
        """Parts from a parallel engine must arrive in input order; a bug if they do not."""
        keys = self.layout.sort_key(result)  # (n,) int64
        if keys[0] <= self._last_key or np.any(np.diff(keys) <= 0):
            raise RuntimeError("internal error: result rows reached the writer out of order")
        self._last_key = int(keys[-1])


def write_table(table: pa.Table, out: str | os.PathLike[str]) -> Path:
    """A whole Arrow table as CSV or Parquet (by extension), written atomically."""
    target = check_output_path(out)
    with atomic_path(target) as tmp:
        if target.suffix.lower() == ".csv":
            pacsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
    return target
