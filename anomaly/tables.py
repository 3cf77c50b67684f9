"""Reading tabular input (CSV, Parquet) and image folders into what preprocessing takes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from anomaly.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})

CSV_CONVERT = pacsv.ConvertOptions(strings_can_be_null=True)


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """A whole CSV (with header) or Parquet file as an Arrow table; clear errors otherwise."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty; expected a CSV with a header row or a Parquet file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(p)
        else:
            table = pacsv.read_csv(p, convert_options=CSV_CONVERT)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read {p}: {exc}") from exc
    if table.num_rows == 0:
        raise InputError(f"{p} has a header but no rows")
    return table


def table_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Arrow table -> {column: numpy array}; numeric nulls become NaN, string nulls None."""
    out: dict[str, np.ndarray] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        arr: Any = col.to_numpy(zero_copy_only=False)
        if pa.types.is_integer(col.type) and col.null_count:
            arr = arr.astype(np.float64)
        out[name] = arr
    return out


def iter_image_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Image files below ``root`` (recursive), in a stable sorted order."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"no such folder: {base}")
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                yield Path(dirpath) / name
