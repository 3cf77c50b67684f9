"""Reading input: whole CSV and Parquet files, which files a path or glob names, the CSV text
helpers, and image folders. Streaming a table in fixed-size chunks is
:mod:`anomaly.batch.stream`."""

from __future__ import annotations

import glob
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from anomaly.batch.dialect import (
    csv_parse_options,
    decimal_points,
    numbers_where_all,
    record_end,
    sniff_decimal,
    sniff_encoding,
    to_utf8,
)
from anomaly.batch.formats import (
    header_is_data,
    refuse_binary,
    refuse_lines_before_header,
    refuse_other_format,
)
from anomaly.errors import InputError
from anomaly.preprocessing.values import MISSING_TOKENS, seconds

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
#: Compression a table file may carry, detected from its last suffix as Arrow's CSV reader
#: (which training uses) detects it: ``rows.csv.gz`` is read as the CSV inside.
COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".zst", ".lz4"})
#: What a glob may match (``data/*``): CSV and other delimited text (the delimiter is read
#: from the header), compressed or not, and Parquet. A file named on its own is read as CSV
#: whatever its name unless it is Parquet, as training reads it.
TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".tab", ".txt", *PARQUET_SUFFIXES})

def check_table_format(path: Path) -> None:
    """InputError for a file that is a table in a format read by converting it first, or a
    CSV whose first line is not its header (:mod:`anomaly.batch.formats`)."""
    refuse_other_format(path)
    if not is_csv(path):
        return
    if path.suffix.lower() not in COMPRESSION_SUFFIXES:
        with open(path, "rb") as fh:
            refuse_binary(path, fh.read(4))
    try:
        with open_csv(path) as fh:
            head = fh.read(1 << 14)
    except OSError as exc:  # a truncated or corrupt compressed file
        raise InputError(f"cannot read {path}: {exc}") from exc
    refuse_lines_before_header(path, head)


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """A whole CSV (with header) or Parquet file as an Arrow table; clear errors otherwise.
    A CSV's missing markers (:data:`MISSING_TOKENS`) are read as nulls, so that a numeric
    column with ``?`` or ``NA`` in some rows is read as numbers with gaps."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty; expected a CSV with a header row or a Parquet file")
    check_table_format(p)
    try:
        if not is_csv(p):
            table = pq.read_table(p)
        else:
            with open_csv(p) as fh:
                head = fh.read(1 << 16)
            encoding = sniff_encoding(head)
            head = to_utf8(head, encoding, head=True)
            decimal = sniff_decimal(head)
            convert = pacsv.ConvertOptions(strings_can_be_null=True,
                                           null_values=["", *sorted(MISSING_TOKENS)],
                                           decimal_point=decimal)
            table = pacsv.read_csv(p, read_options=pacsv.ReadOptions(encoding=encoding),
                                   parse_options=csv_parse_options(
                                       head, invalid_row_handler=_skip_blank_rows),
                                   convert_options=convert)
            if decimal == ",":  # "1.234,5" stays text in Arrow's reader: as batch reads it
                table = numbers_where_all(decimal_points(table))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read {p}: {exc}") from exc
    if table.num_rows == 0:
        raise InputError(f"{p} has a header but no rows")
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type)
               or pa.types.is_floating(f.type)]
    if is_csv(p) and header_is_data(table.column_names, numeric=numeric):
        raise InputError(f"the first line of {p} is data, not a header: its columns are "
                         f"named by numbers ({', '.join(table.column_names[:3])}, ...); add "
                         "a header row that names the columns")
    check_unique_names(table.column_names, table.column_names, str(p))
    return table


def _skip_blank_rows(row: Any) -> str:
    """Arrow's verdict on a row with the wrong number of fields: a line of spaces only (a
    hand-edited file) is skipped as empty lines are; any other stays a parse error."""
    return "skip" if not row.text.strip() else "error"


def check_unique_names(names: list[str], used: Collection[str], where: str) -> None:
    """InputError when a column of ``used`` appears more than once among a file's column
    ``names`` (header order): which of the two a model would read is a guess, and a dict of
    columns keeps only one of them without a word."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        positions.setdefault(name, []).append(i + 1)
    twice = {n: at for n, at in positions.items() if len(at) > 1 and n in used}
    if twice:
        name, at = next(iter(twice.items()))
        more = f" (and {len(twice) - 1} more name(s))" if len(twice) > 1 else ""
        raise InputError(f"column name '{name}' appears {len(at)} times in {where} (columns "
                         f"{', '.join(map(str, at))}){more}; give every column its own name")


def table_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Arrow table -> {column: numpy array}; numeric nulls become NaN, string nulls None,
    durations float seconds."""
    out: dict[str, np.ndarray] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_decimal(col.type) or pa.types.is_float16(col.type):
            col = col.cast(pa.float64())  # Decimal objects and float16 are numbers too
        arr: Any = col.to_numpy(zero_copy_only=False)
        if pa.types.is_duration(col.type):
            arr = seconds(arr)  # a measurement, in seconds; null -> NaN
        elif pa.types.is_integer(col.type) and col.null_count:
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


def is_csv(path: Path) -> bool:
    """Whether a table file is read as delimited text: every file that is not Parquet."""
    return path.suffix.lower() not in PARQUET_SUFFIXES


def is_table_file(path: Path) -> bool:
    """Whether a glob's match is a table file (:data:`TABLE_SUFFIXES`, after any
    compression suffix)."""
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes.pop()
    return bool(suffixes) and suffixes[-1] in TABLE_SUFFIXES


def is_compressed(path: Path) -> bool:
    return path.suffix.lower() in COMPRESSION_SUFFIXES


def open_csv(path: Path) -> pa.NativeFile:
    """A CSV file's bytes as a stream, decompressed when its name says it is compressed."""
    return pa.input_stream(str(path), compression="detect")


def expand_table_inputs(source: str | os.PathLike[str]) -> list[Path]:
    """A CSV/Parquet file, or a glob of them (``data/*.csv``, ``parts/**/*.parquet``), as a
    sorted list of files. Raises :class:`InputError` when nothing usable matches."""
    text = os.fspath(source)
    if not any(ch in text for ch in "*?["):
        p = Path(text)
        if not p.is_file():
            raise InputError(f"no such file: {p}")
        return [p]
    matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
    if not matches:
        raise InputError(f"no files match {text}")
    odd = [m for m in matches if not is_table_file(m)]
    if odd:
        raise InputError(f"{odd[0]} matches {text} but is not a CSV (.csv, .tsv, .txt, "
                         "optionally .gz) or Parquet file; narrow the pattern (e.g. '*.csv')")
    return matches


def csv_header_names(data: bytes) -> list[str]:
    """The column names in the header record of CSV bytes (only the header is parsed)."""
    end = record_end(data, first=True)
    header = data if end < 0 else data[:end]
    if not header.endswith(b"\n"):
        header += b"\n"  # a file that is only a header, without a final newline
    table = pacsv.read_csv(arrow_reader(header), read_options=pacsv.ReadOptions(
        use_threads=False), parse_options=csv_parse_options(header))
    try:
        return list(table.column_names)
    except UnicodeDecodeError as exc:  # callers transcode to UTF-8 first; never a traceback
        raise InputError("the CSV header is not UTF-8 text; save the file as UTF-8") from exc


def read_csv_text(data: bytes, columns: list[str]) -> pa.Table:
    """Whole CSV bytes -> the named columns as binary (no type inference), as batch scoring
    reads CSV files; blank fields are nulls."""
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.binary()),
                                   include_columns=columns, strings_can_be_null=True)
    table = pacsv.read_csv(arrow_reader(data), read_options=pacsv.ReadOptions(
        use_threads=False), parse_options=csv_parse_options(data), convert_options=convert)
    return decimal_points(table) if sniff_decimal(data[:1 << 16]) == "," else table


def arrow_reader(data: bytes) -> pa.BufferReader:
    """``data`` in memory that Arrow owns. Arrow may drop its last reference to the input on
    one of its own threads; were that a Python ``bytes``, freeing it needs the GIL, which at
    interpreter exit kills the thread and aborts the process ("terminate called without an
    active exception")."""
    buf = pa.allocate_buffer(len(data))
    np.frombuffer(buf, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return pa.BufferReader(buf)
