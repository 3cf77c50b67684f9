"""One chunk of batch input -> one result table; the same code for every engine.

Two steps, so that an engine can run them in different places (the Ray engine prepares in
read tasks and scores in actors that hold the onnxruntime session):

* ``prepare_*_chunk``: raw rows or image files -> a *prepared* table: the chunk's keys, id,
  ``__reject`` (why a row cannot be scored) and ``__x``, the graph's input row;
* :func:`score_prepared`: prepared table -> a result table in :class:`ResultLayout`.

Preprocessing is :meth:`TabularPreprocessor.encode_arrow` / :meth:`ImagePreprocessor.decode`,
the same encoders the scorer and the service use. Noise depends only on the seed, so a row's
score does not depend on its chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from anomaly._fs import atomic_write
from anomaly.batch.sink import INDEX_COL, PATH_COL, ResultLayout
from anomaly.batch.stream import FILE_COL, REJECT_COL, ROW_COL
from anomaly.errors import InputError
from anomaly.inference import Scorer, ScoreResult
from anomaly.preprocessing import ImagePreprocessor, TabularPreprocessor

X_COL = "__x"  # fixed_size_list<float32>[D]: the graph's input row (zeros for rejects)


@dataclass(frozen=True)
class ScoreSettings:
    """What the scoring step needs besides the scorer; plain data, so it pickles to actors."""

    layout: ResultLayout
    seed: int = 0
    mc_samples: int | None = None
    heatmaps: str | None = None  # folder for heat-map PNGs (images)


def result_columns(scorer: Scorer, result: ScoreResult, explain: int,
                   with_se: bool = False) -> dict[str, np.ndarray]:
    """score, p_value, is_anomaly (+ score_se, + top-K attributions for tabular models),
    each (B,). A bundle whose graphs predate the per-draw output has no SE: NaN (empty)."""
    out: dict[str, np.ndarray] = {
        "score": result.scores, "p_value": result.p_values, "is_anomaly": result.is_anomaly}
    if with_se:
        out["score_se"] = (result.score_se if result.score_se is not None
                           else np.full(len(result), np.nan))
    if explain > 0:
        tops = scorer.top_columns(result, explain)
        for k in range(min(explain, len(tops[0]) if tops else 0)):
            out[f"top{k + 1}_column"] = np.array([t[k][0] for t in tops], dtype=object)
            out[f"top{k + 1}_score"] = np.array([t[k][1] for t in tops])
    return out


# --- tables -------------------------------------------------------------------------------

def prepare_table_chunk(prep: TabularPreprocessor, raw: pa.Table, layout: ResultLayout,
                        from_csv: bool) -> pa.Table:
    """A raw chunk from :func:`anomaly.batch.stream.iter_table_chunks` -> prepared table."""
    x, reasons = prep.encode_arrow(raw, from_csv, raw.column(REJECT_COL).to_pylist())
    fields = [raw.column(FILE_COL), raw.column(ROW_COL)]
    names = [FILE_COL, ROW_COL]
    for source, carried in layout.carried_sources():
        fields.append(carried_values(raw.column(source), carried))
        names.append(carried.name)
    fields += [pa.array(reasons, pa.string()), _x_column(x)]
    return pa.Table.from_arrays(fields, names=[*names, REJECT_COL, X_COL])


def carried_values(arr: pa.ChunkedArray, carried: pa.Field) -> pa.Array:
    """An id or label column as the layout's type (text for CSV, where it is read as
    bytes)."""
    arr = arr.combine_chunks()
    target = carried.type
    if arr.type == target:
        return arr
    if pa.types.is_binary(arr.type) and pa.types.is_string(target):
        try:
            return pc.cast(arr, target)
        except pa.ArrowInvalid:  # not UTF-8: keep the row, show the bytes as best we can
            return pa.array([None if v is None else v.decode("utf-8", "replace")
                             for v in arr.to_pylist()], pa.string())
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"a carried column ({carried.name}) is {arr.type} in one file and "
                         f"{target} in another; give files with matching types") from exc


# --- images -------------------------------------------------------------------------------

def prepare_image_chunk(prep: ImagePreprocessor, root: Path, start: int,
                        relpaths: list[str]) -> pa.Table:
    """Image files ``root/relpath`` (positions ``start``... in the sorted list) -> prepared
    table. An unreadable or undecodable file becomes a reject, not an error."""
    n = len(relpaths)
    x = np.zeros((n, prep.input_dim), dtype=np.float32)  # (n, C*H*W)
    reasons: list[str | None] = [None] * n
    for i, rel in enumerate(relpaths):
        try:
            data = (root / rel).read_bytes()
        except OSError as exc:
            reasons[i] = f"cannot read the file: {exc.strerror or exc}"
            continue
        try:
            x[i] = prep.decode(data, name=rel).reshape(-1)
        except InputError as exc:
            reasons[i] = str(exc)
    return pa.Table.from_arrays(
        [pa.array(np.arange(start, start + n, dtype=np.int64)), pa.array(relpaths, pa.string()),
         pa.array(reasons, pa.string()), _x_column(x)],
        names=[INDEX_COL, PATH_COL, REJECT_COL, X_COL])


# --- scoring ------------------------------------------------------------------------------

def score_prepared(scorer: Scorer, prepared: pa.Table, settings: ScoreSettings) -> pa.Table:
    """Prepared table -> result table (every row; scores null where ``__reject`` is set)."""
    layout = settings.layout
    n = prepared.num_rows
    ok = np.asarray(prepared.column(REJECT_COL).is_null())  # (n,) bool
    pos = np.flatnonzero(ok)  # (B,)
    values: dict[str, np.ndarray] = {}
    if pos.size:
        x = x_matrix(prepared)[pos]  # (B, D)
        heat_dir = settings.heatmaps if layout.kind == "image" else None
        result = scorer.score(x, settings.seed, settings.mc_samples,
                              explain=layout.explain > 0 or heat_dir is not None)
        values = result_columns(scorer, result, layout.explain, layout.score_se)
        if heat_dir:
            paths = prepared.column(PATH_COL).take(pa.array(pos)).to_pylist()
            write_heatmaps(scorer, result, x, paths, Path(heat_dir))
    arrays: list[Any] = [prepared.column(f.name) for f in layout.key_fields()]
    arrays += [prepared.column(f.name) for f in layout.carried_fields()]
    for field in layout.score_fields():
        full = np.empty(n, dtype=object if pa.types.is_string(field.type) else
                        (np.bool_ if pa.types.is_boolean(field.type) else np.float64))
        if pos.size:
            full[pos] = values[field.name]
        missing = ~ok
        if field.name == "score_se":  # no error estimate (L = 1, older bundles): null
            missing = missing | np.isnan(full.astype(np.float64))
        arrays.append(pa.array(full, field.type, mask=missing))
    arrays.append(prepared.column(REJECT_COL))
    return pa.Table.from_arrays(arrays, schema=layout.result_schema())


def chunk_ids(prepared: pa.Table, layout: ResultLayout, chunk_rows: int) -> np.ndarray:
    """(n,) int64 id of the chunk each row belongs to: rows scored together in the local
    engine. Another engine that scores these groups as units gets bit-identical scores
    (onnxruntime's results can differ in the last bit with the batch's composition)."""
    if layout.kind == "image":
        return np.asarray(prepared.column(INDEX_COL), dtype=np.int64) // chunk_rows
    files = np.asarray(prepared.column(FILE_COL), dtype=np.int64)
    return (files << 40) + np.asarray(prepared.column(ROW_COL), dtype=np.int64) // chunk_rows


def x_matrix(prepared: pa.Table) -> np.ndarray:
    """The ``__x`` column as a (n, D) float32 array."""
    col = prepared.column(X_COL).combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


def _x_column(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def write_heatmaps(scorer: Scorer, result: ScoreResult, x: np.ndarray, relpaths: list[str],
                   heat_dir: Path) -> None:
    """One PNG per image at ``heat_dir/<relpath>.png``, each written atomically."""
    from anomaly import plots  # matplotlib: only when heat maps are asked for

    shape = scorer.image.shape  # (C, H, W)
    maps = scorer.heatmaps(result)  # (B, H, W)
    for i, rel in enumerate(relpaths):
        target = heat_dir / Path(rel).with_suffix(".png")
        atomic_write(target, plots.heatmap_overlay(x[i].reshape(shape), maps[i],
                                                   result.reconstruction[i].reshape(shape),
                                                   float(result.scores[i])))
