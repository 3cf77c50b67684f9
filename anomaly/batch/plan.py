"""What a batch-scoring job resolves to (:class:`Plan`): the input files or images, the
result layout and the chunking, checked against the model before any scoring.
Engine-independent; the local and Ray engines both start here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from anomaly.batch.checkpoint import file_fingerprint, job_digest
from anomaly.batch.chunks import prepare_image_chunk, prepare_table_chunk
from anomaly.batch.formats import header_is_data
from anomaly.batch.options import IMAGE_CHUNK_ROWS, TABLE_CHUNK_ROWS, ScoreOptions
from anomaly.batch.sink import ResultLayout
from anomaly.batch.sources import check_unique_names, expand_table_inputs, is_csv, iter_image_files
from anomaly.batch.stream import iter_table_chunks, table_column_names
from anomaly.errors import InputError, listed, near_names
from anomaly.inference import Scorer


@dataclass(frozen=True)
class Plan:
    """The resolved job. Tables: ``files`` and the ``columns`` to read from them; images:
    ``root`` and ``images``, the relative paths in sorted order (the output's order)."""

    kind: Literal["tabular", "image"]
    layout: ResultLayout
    chunk_rows: int
    files: tuple[Path, ...] = ()
    columns: tuple[str, ...] = ()
    root: Path | None = None
    images: tuple[str, ...] = ()

    def prepared_chunks(self, scorer: Scorer, skip: int = 0
                        ) -> Iterator[tuple[int, int, pa.Table | None]]:
        """(chunk index, rows, prepared table) in order; ``None`` for the first ``skip``
        chunks, which are only counted (a CSV still has to be parsed to find chunk k)."""
        index = 0
        if self.kind == "image":
            assert self.root is not None
            prep = scorer.image
            for start in range(0, len(self.images), self.chunk_rows):
                names = list(self.images[start : start + self.chunk_rows])
                yield index, len(names), (None if index < skip else
                                          prepare_image_chunk(prep, self.root, start, names))
                index += 1
            return
        tab = scorer.tabular
        for file_index, path in enumerate(self.files):
            for raw in iter_table_chunks(path, file_index, list(self.columns), self.chunk_rows):
                yield index, raw.num_rows, (None if index < skip else prepare_table_chunk(
                    tab, raw, self.layout, is_csv(path)))
                index += 1

    def job(self, scorer: Scorer, options: ScoreOptions) -> dict[str, Any]:
        """What decides the results, for :class:`anomaly.checkpoint.PartialRun`."""
        bundle = scorer.bundle.path
        digest = hashlib.sha256((bundle / "bundle.json").read_bytes())
        digest.update((bundle / scorer.manifest.files.calibration).read_bytes())
        if self.kind == "image":
            assert self.root is not None
            inputs: Any = job_digest({"root": str(self.root.resolve()), "files": [
                [rel, *file_fingerprint(self.root / rel).values()] for rel in self.images]})
        else:
            inputs = [file_fingerprint(p) for p in self.files]
        return {"bundle": digest.hexdigest(), "inputs": inputs, "kind": self.kind,
                "chunk_rows": self.chunk_rows, "seed": options.seed,
                "mc_samples": scorer.mc_samples, "explain": self.layout.explain,
                "score_se": self.layout.score_se,
                "id_column": self.layout.id_column,
                "heatmaps": str(Path(options.heatmaps).resolve()) if options.heatmaps else None}


def make_plan(scorer: Scorer, source: str | os.PathLike[str], options: ScoreOptions) -> Plan:
    """Resolve the input and check it fits the model, before any scoring."""
    src = Path(source)
    kind = scorer.manifest.kind
    if options.chunk_rows is not None and options.chunk_rows < 1:
        raise InputError(f"--chunk-rows must be at least 1, got {options.chunk_rows}")
    if options.explain < 0:
        raise InputError(f"--explain must be 0 or more, got {options.explain}")
    if src.is_dir():
        if kind != "image":
            raise InputError(f"model '{scorer.bundle.name}' scores table rows: give it a CSV "
                             f"or Parquet file, not the folder {src}")
        if options.explain:
            raise InputError("--explain ranks table columns; for an image model use "
                             "--heatmaps DIR to see where an image is anomalous")
        images = sorted(p.relative_to(src).as_posix() for p in iter_image_files(src))
        if not images:
            raise InputError(f"no images (png, jpg, bmp, tif, ...) found under {src}")
        return Plan("image", ResultLayout("image", score_se=options.score_se),
                    options.chunk_rows or IMAGE_CHUNK_ROWS,
                    root=src, images=tuple(images))
    if kind != "tabular":
        raise InputError(f"model '{scorer.bundle.name}' scores images: give it a folder of "
                         f"images, not {src.name}")
    if options.heatmaps:
        raise InputError("--heatmaps is for image models; use --explain K for tables")
    files = expand_table_inputs(source)
    needed = scorer.tabular.column_names
    id_col, label_col = options.id_column, options.label_column
    read = {*needed, *(c for c in (id_col, label_col) if c)}
    for path in files:
        names = table_column_names(path)
        check_unique_names(names, read, str(path))
        missing = [c for c in needed if c not in names]
        if missing:
            hint = (" (its first line is data, not a header: add the header row)"
                    if header_is_data(names, needed) else near_names(missing, names))
            raise InputError(f"missing column(s) {listed(missing)} in {path}{hint}; the "
                             f"model expects {listed(needed)}")
        for flag, col in (("--id-column", id_col), ("--label-column", label_col)):
            if col is not None and col not in names:
                raise InputError(f"{flag} '{col}' is not a column of {path}; its columns "
                                 f"are {names}")
    layout = ResultLayout("tabular", tuple(str(p) for p in files), id_col,
                          _id_type(files, id_col), min(options.explain, len(needed)),
                          label_col, options.score_se)
    names = layout.output_schema().names
    if len(set(names)) < len(names):
        raise InputError(f"--id-column '{id_col}' would clash with an output column of that "
                         "name; rename it in the input")
    columns = list(dict.fromkeys([*needed, *(c for c in (id_col, label_col) if c)]))
    return Plan("tabular", layout, options.chunk_rows or TABLE_CHUNK_ROWS,
                files=tuple(files), columns=tuple(columns))


def _id_type(files: list[Path], id_col: str | None) -> pa.DataType | None:
    """Parquet ids keep their type (the first file's); CSV ids are text."""
    if id_col is None or any(is_csv(p) for p in files):
        return None
    t = pq.ParquetFile(files[0]).schema_arrow.field(id_col).type
    return t.value_type if pa.types.is_dictionary(t) else t
