"""The CSV record splitter behind streaming reads: it cuts a file into parser blocks at
newlines outside quotes, so a quoted field holding newlines, commas and doubled quotes must
come out whole wherever a block boundary falls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import anomaly.batch.sources as sources
from anomaly.batch.sources import csv_header_names, iter_table_chunks

PIECES = ["plain", "with,comma", 'say ""hi""', "two\nlines", "\n", "end\r\nwith crlf", '""',
          "a\n\nb", "trailing\n"]


def _field(rng: np.random.Generator) -> str:
    text = "".join(rng.choice(PIECES, size=int(rng.integers(1, 4))).tolist())
    return f'"{text}"' if any(c in text for c in ',"\n\r') else text


def _csv(rng: np.random.Generator, rows: int) -> str:
    lines = ['id,"note, quoted",x']
    for i in range(rows):
        lines.append(f"{i},{_field(rng)},{rng.normal():.6f}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("block", [7, 16, 33, 64, 257])
def test_quoted_newlines_survive_every_block_boundary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", block)
    rng = np.random.default_rng(block)
    src = tmp_path / "notes.csv"
    src.write_bytes(_csv(rng, 120).encode())
    whole = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={"id": pa.binary(), "note, quoted": pa.binary(), "x": pa.binary()}))
    columns = ["id", "note, quoted", "x"]
    got = pa.concat_tables(iter_table_chunks(src, 0, columns, chunk_rows=11))
    assert got.column("__row").to_pylist() == list(range(120))
    assert got.column("__reject").null_count == 120  # no line misread as malformed
    for name in columns:
        assert got.column(name).to_pylist() == whole.column(name).to_pylist(), name


def test_a_record_longer_than_a_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 8)
    src = tmp_path / "long.csv"
    long = "x" * 100 + "\n" + "y" * 50
    src.write_text(f'a,b\n1,"{long}"\n2,short\n')
    got = pa.concat_tables(iter_table_chunks(src, 0, ["a", "b"], chunk_rows=5))
    assert got.column("b").to_pylist() == [long.encode(), b"short"]


def test_header_names_from_the_first_record_only() -> None:
    body = b'a,"b\nstill b",c\n1,2,3\n'
    assert csv_header_names(body) == ["a", "b\nstill b", "c"]
