"""Streaming a CSV or Parquet file in chunks of exactly ``chunk_rows`` records, for batch
scoring, so memory does not grow with the file and chunk k of a file always holds the same rows
(resume and the Ray engine rely on that). Every chunk carries the record's position in its file
(``__row``, counting malformed lines too) and the reason a malformed line was dropped
(``__reject``)."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from anomaly.batch.dialect import (
    cr_only,
    csv_parse_options,
    decimal_points,
    record_end,
    sniff_decimal,
    sniff_encoding,
)
from anomaly.batch.sources import (
    arrow_reader,
    check_table_format,
    csv_header_names,
    is_compressed,
    is_csv,
    open_csv,
)
from anomaly.errors import InputError

#: Internal columns of a raw chunk (and of everything derived from it).
FILE_COL = "__file"  # int32: index of the input file in the job's file list
ROW_COL = "__row"  # int64: record index in that file, 0 = first line after the header
REJECT_COL = "__reject"  # string: why the row is not scored; null for good rows

#: Bytes the CSV parser reads at a time: bounds its memory, independent of the file size.
CSV_BLOCK_BYTES = 4 << 20


def table_column_names(path: Path) -> list[str]:
    """The column names of a CSV (header row) or Parquet file, without reading the data."""
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty; expected a CSV with a header row or a Parquet file")
    check_table_format(path)
    try:
        if not is_csv(path):
            return list(pq.ParquetFile(path).schema_arrow.names)
        header, _ = next(_csv_blocks(path), (b"", b""))
        return csv_header_names(header)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def iter_table_chunks(path: Path, file_index: int, columns: list[str],
                      chunk_rows: int) -> Iterator[pa.Table]:
    """Chunks of exactly ``chunk_rows`` records of ``path`` (the last one shorter), holding
    ``__file``, ``__row``, ``__reject`` and ``columns``.

    CSV columns are read as binary, never type-inferred: inference per block could give one
    chunk int64 and the next string, and a stray word in a numeric column would fail a whole
    block; converting per chunk lets a bad value reject only its row. A malformed line (wrong
    field count) becomes a row with null values and a ``__reject`` reason. Parquet columns
    keep their stored types.
    """
    batches = _csv_batches(path, columns) if is_csv(path) else _parquet_batches(path, columns)
    pending: list[pa.Table] = []
    held = 0
    for table in batches:
        pending.append(table)
        held += table.num_rows
        while held >= chunk_rows:
            merged = pa.concat_tables(pending)
            yield _with_keys(merged.slice(0, chunk_rows), file_index)
            rest = merged.slice(chunk_rows)
            pending, held = [rest], rest.num_rows
    if held:
        yield _with_keys(pa.concat_tables(pending), file_index)


def _with_keys(table: pa.Table, file_index: int) -> pa.Table:
    table = table.combine_chunks()
    n = table.num_rows
    return table.add_column(0, FILE_COL, pa.array(np.full(n, file_index, dtype=np.int32)))


def _csv_blocks(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(header, body) pairs: the header record, and the rest of the file cut into blocks of
    about CSV_BLOCK_BYTES that end at record boundaries (a newline outside quotes). The first
    pair may have an empty body (a header-only file yields just that one).

    Cutting here rather than in Arrow's streaming reader keeps every parse synchronous on the
    calling thread: the streaming reader parses ahead on a background thread, which would run
    the Python invalid-row callback there and can abort the interpreter at exit when a reader
    is abandoned early (apache/arrow#34314)."""
    try:
        fh = open_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    with fh:
        buf, eof = b"", False
        # the file's encoding, sniffed from its first block; blocks become UTF-8 through
        # one incremental decoder, so a character (or UTF-16's byte pair) cut by a block
        # boundary and the byte-order mark are decoded as in one piece
        decoder: codecs.IncrementalDecoder | None = None
        utf8 = cr = False

        def fill() -> None:
            nonlocal buf, eof, decoder, utf8, cr
            try:
                more = fh.read(CSV_BLOCK_BYTES)
            except (pa.ArrowInvalid, OSError) as exc:  # a damaged compressed stream
                raise InputError(f"cannot read {path}: {exc}") from exc
            first = decoder is None and not utf8
            eof = not more
            if first:
                encoding = sniff_encoding(more[:1 << 16])
                utf8 = encoding == "utf-8"
                decoder = None if utf8 else codecs.getincrementaldecoder(encoding)()
            more = more if decoder is None else decoder.decode(more, final=eof).encode()
            if first:
                cr = cr_only(more[:1 << 16])
            buf += more.replace(b"\r", b"\n") if cr else more

        fill()
        header_end = record_end(buf, first=True)
        while header_end < 0 and not eof:
            fill()
            header_end = record_end(buf, first=True)
        header_end = len(buf) if header_end < 0 else header_end
        header, buf = buf[:header_end], buf[header_end:]
        yield header, b""
        while buf or not eof:
            if not eof and len(buf) < CSV_BLOCK_BYTES:
                fill()
                continue
            cut = len(buf) if eof else record_end(buf, first=False)
            if cut <= 0:  # one record longer than a block: read on
                fill()
                continue
            yield header, buf[:cut]
            buf = buf[cut:]


def _csv_batches(path: Path, columns: list[str]) -> Iterator[pa.Table]:
    """One table per block, with ``__row`` and ``__reject``: malformed lines are put back in
    place as reject rows, so row numbers count every record of the file."""
    schema = pa.schema([(c, pa.binary()) for c in columns])
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.binary()),
                                   include_columns=columns, strings_can_be_null=True)
    base = 0  # record index of the block's first record
    decimal: str | None = None  # the file's decimal mark, sniffed from its first block
    for header, body in _csv_blocks(path):
        if not body.strip():
            continue
        if decimal is None:
            decimal = sniff_decimal(header + body[:1 << 16])
        malformed: list[tuple[int, str]] = []  # (record index in the block, reason)

        def on_invalid(row: Any, bad: list[tuple[int, str]] = malformed) -> str:
            # number: 1-based record number in this parse, the header being record 1
            bad.append((int(row.number) - 2, f"malformed line: {row.actual_columns} fields "
                        f"where the header has {row.expected_columns}"))
            return "skip"

        try:
            table = pacsv.read_csv(
                arrow_reader(header + body),
                read_options=pacsv.ReadOptions(use_threads=False,
                                               block_size=len(header) + len(body) + 1),
                parse_options=csv_parse_options(header, invalid_row_handler=on_invalid),
                convert_options=convert)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read {path} after record {base}: {exc}") from exc
        if decimal == ",":
            table = decimal_points(table)
        n = table.num_rows + len(malformed)
        good = np.ones(n, dtype=bool)
        good[[i for i, _ in malformed]] = False
        rows = base + np.flatnonzero(good)  # (table.num_rows,) int64
        table = pa.Table.from_arrays([pa.array(rows), *table.select(columns).columns,
                                      pa.nulls(table.num_rows, pa.string())],
                                     names=[ROW_COL, *columns, REJECT_COL])
        if malformed:
            table = pa.concat_tables([table, _reject_rows(malformed, schema, base)])
            table = table.take(pc.sort_indices(table, [(ROW_COL, "ascending")]))
        base += n
        if table.num_rows:
            yield table


def _reject_rows(bad: list[tuple[int, str]], schema: pa.Schema, base: int) -> pa.Table:
    n = len(bad)
    cols = {ROW_COL: pa.array([base + i for i, _ in bad], pa.int64()),
            **{f.name: pa.nulls(n, f.type) for f in schema},
            REJECT_COL: pa.array([why for _, why in bad], pa.string())}
    return pa.table(cols)


def _parquet_batches(path: Path, columns: list[str]) -> Iterator[pa.Table]:
    try:
        pf = pq.ParquetFile(path)
        start = 0
        for batch in pf.iter_batches(batch_size=65536, columns=columns):
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            table = table.add_column(0, ROW_COL, pa.array(np.arange(start, start + n)))
            yield table.append_column(REJECT_COL, pa.nulls(n, pa.string()))
            start += n
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def estimate_rows(path: Path) -> int:
    """Rows in a table file, for a progress bar: exact for Parquet (footer), estimated for
    CSV from the line length of its first MiB (no full pass over the file); 0 (unknown) for
    a compressed CSV, whose size on disk says little about its length."""
    if not is_csv(path):
        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except (pa.ArrowInvalid, OSError):
            return 0
    if is_compressed(path):
        return 0
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    lines = head.count(b"\n")
    if not lines:
        return 1
    return max(round(size / (len(head) / lines)) - 1, 1)
