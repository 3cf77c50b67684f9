"""The CSV record splitter behind streaming reads: it cuts a file into parser blocks at
newlines outside quotes, so a quoted field holding newlines, commas and doubled quotes must
come out whole wherever a block boundary falls."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import anomaly.batch.dialect as dialect
import anomaly.batch.formats as formats
import anomaly.batch.sources as sources
import anomaly.batch.stream as stream
from anomaly.batch.sources import csv_header_names
from anomaly.batch.stream import iter_table_chunks
from anomaly.errors import InputError

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
    monkeypatch.setattr(stream, "CSV_BLOCK_BYTES", block)
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
    monkeypatch.setattr(stream, "CSV_BLOCK_BYTES", 8)
    src = tmp_path / "long.csv"
    long = "x" * 100 + "\n" + "y" * 50
    src.write_text(f'a,b\n1,"{long}"\n2,short\n')
    got = pa.concat_tables(iter_table_chunks(src, 0, ["a", "b"], chunk_rows=5))
    assert got.column("b").to_pylist() == [long.encode(), b"short"]


def test_header_names_from_the_first_record_only() -> None:
    body = b'a,"b\nstill b",c\n1,2,3\n'
    assert csv_header_names(body) == ["a", "b\nstill b", "c"]


@pytest.mark.parametrize(("header", "expected"), [
    (b"a,b,c\n1,2,3\n", ","),
    (b"a;b;c\n1,5;2,5;3\n", ";"),  # a decimal comma in the body does not count
    (b"a\tb\tc\n", "\t"),
    (b"a|b\n", "|"),
    (b'"x;y",b,c\n', ","),  # a separator inside a quoted name does not count
    (b"only\n1\n", ","),
    (b"a;b,c\n", ","),  # a tie goes to the comma
])
def test_the_delimiter_is_sniffed_from_the_header(header: bytes, expected: str) -> None:
    assert dialect.sniff_delimiter(header) == expected


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_every_reader_takes_the_sniffed_delimiter(tmp_path: Path, sep: str) -> None:
    """Training's whole-file read, the header read and batch scoring's chunked read of the same
    table written with another separator give what the comma file gives."""
    rng = np.random.default_rng(3)
    rows = [(i, f"{rng.normal():.5f}", rng.choice(["red", "blue"])) for i in range(40)]
    paths = {}
    for name, s in (("comma", ","), ("other", sep)):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(s.join(["id", "x", "colour"]) + "\n" +
                               "".join(s.join(map(str, r)) + "\n" for r in rows))
    assert stream.table_column_names(paths["other"]) == ["id", "x", "colour"]
    assert sources.read_table(paths["other"]).equals(sources.read_table(paths["comma"]))
    chunks = [pa.concat_tables(iter_table_chunks(p, 0, ["x", "colour"], chunk_rows=16))
              for p in (paths["comma"], paths["other"])]
    assert chunks[0].equals(chunks[1])
    text = paths["other"].read_bytes()
    assert sources.read_csv_text(text, ["x"]).equals(
        sources.read_csv_text(paths["comma"].read_bytes(), ["x"]))


@pytest.mark.parametrize(("head", "expected"), [
    (b"a;b;c\n1,5;-2,25e3;x\n3;4,0;y\n", ","),
    (b"a\tb\n1,5\t2\n", ","),
    (b"a;b\n1.5;2,5\n", "."),  # a point anywhere: the file writes points
    (b"a,b\n1,5\n", "."),  # comma-separated: a comma cannot be the decimal mark
    (b'a;b\n"1,5";2\n', "."),  # a quoted field is text, not a number
    (b"a;b\n1;2\n", "."),  # no fraction at all
    (b"a;b\n1,2,3;4\n", "."),  # not a number
    (b"a;b\n-1.234,5;2\n", ","),  # points between thousands, a decimal comma
    (b"a;b\n1.234;2,5\n", ","),  # 1.234 may be a thousand: the comma decides
    (b"a;b\n1.234;2\n", "."),  # nothing but a maybe-thousand: points
])
def test_the_decimal_mark_is_sniffed_from_the_first_records(head: bytes, expected: str) -> None:
    assert dialect.sniff_decimal(head) == expected


def test_decimal_comma_files_read_as_their_point_twins(tmp_path: Path) -> None:
    """A locale's spreadsheet export (``;``, decimal commas, a byte-order mark, CRLF) gives the
    numbers of the same table written with points and commas, in every reader; fields that
    are not decimal-comma numbers are left as they are."""
    rng = np.random.default_rng(5)
    rows = [(f"{rng.normal() * 100:.4f}", f"{rng.lognormal():.3e}", rng.choice(["a,b", "c"]),
             rng.normal() * 1e6) for _ in range(50)]
    eu = tmp_path / "eu.csv"
    us = tmp_path / "us.csv"
    # amounts with thousands grouped by points (-1.234.567,89) or not grouped at all
    amounts = [f"{a:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".") if i % 3
               else f"{a:.2f}".replace(".", ",") for i, (*_, a) in enumerate(rows)]
    eu.write_bytes(("\ufeffx;y;label;amount\r\n" + "".join(
        f'{x.replace(".", ",")};{y.replace(".", ",")};"{lab}";{a}\r\n'
        for (x, y, lab, _), a in zip(rows, amounts, strict=True))).encode())
    us.write_text("x,y,label,amount\n" + "".join(f'{x},{y},"{lab}",{a:.2f}\n'
                                                  for x, y, lab, a in rows))
    assert any(a.count(".") == 2 for a in amounts)
    eu_table, us_table = sources.read_table(eu), sources.read_table(us)
    assert eu_table.schema.field("x").type == pa.float64()
    assert eu_table.schema.field("amount").type == pa.float64()
    assert eu_table.equals(us_table)
    names = ["x", "y", "label", "amount"]
    chunks = [pa.concat_tables(iter_table_chunks(p, 0, names, chunk_rows=16))
              for p in (eu, us)]
    assert chunks[0].equals(chunks[1])
    assert sources.read_csv_text(eu.read_bytes(), ["x", "label", "amount"]).equals(
        sources.read_csv_text(us.read_bytes(), ["x", "label", "amount"]))


def test_a_column_name_given_twice_is_refused_where_it_is_read(tmp_path: Path) -> None:
    """A header that names a column twice: training's whole-file read refuses it, naming the
    positions; a reader that uses only other columns lets the duplicates be."""
    path = tmp_path / "twice.csv"
    path.write_text("a,b,a,note,note\n1,2,3,x,y\n")
    with pytest.raises(InputError, match=r"column name 'a' appears 2 times in .*twice.csv "
                                         r"\(columns 1, 3\) \(and 1 more name\(s\)\)"):
        sources.read_table(path)
    names = stream.table_column_names(path)
    sources.check_unique_names(names, ["b"], "x")  # only b is read: nothing to refuse
    with pytest.raises(InputError, match="'note' appears 2 times in x"):
        sources.check_unique_names(names, ["b", "note"], "x")


@pytest.mark.parametrize(("header", "is_data"), [
    ("1.257302210933932962e-01,-1.3e-01,6.4e-01", True),  # np.savetxt
    ("4,6,8,3", True),  # df.to_csv(header=False) of integer codes
    ("0.5;-2,5;3", True),  # a decimal-comma row
    ("5,5,7", True),
    ("1960,1961,1962", False),  # years
    ("0,1,2,3", False),  # numbered sensors
    ("400.5,401.0,401.5", False),  # wavelengths
    ("7", False),
    ("a,1.5,2", False),
    ("x1,x2", False),
])
def test_a_first_line_of_numbers_is_data_not_a_header(header: str, is_data: bool) -> None:
    assert formats.header_is_data(header.split(";" if ";" in header else ",")) is is_data


def test_a_first_line_with_text_fields_is_data_when_no_model_column_is_in_it() -> None:
    """Scoring knows the names to expect: a line with none of them, half of it numbers."""
    assert formats.header_is_data(["0.5", "1.5", "red"], expected=["a", "b", "color"])
    assert not formats.header_is_data(["0.5", "1.5", "red"])
    assert not formats.header_is_data(["x", "y", "1.5"], expected=["a", "b", "color"])
    # training knows which columns hold numbers: their names are numbers, in a data row
    assert formats.header_is_data(["0.5", "-1.5", "red"], numeric=["0.5", "-1.5"])
    assert not formats.header_is_data(["region", "1960", "1961"], numeric=["1960", "1961"])
    assert not formats.header_is_data(["0.5", "x", "red"], numeric=["0.5", "x"])


def test_a_headerless_csv_is_refused_for_training_with_what_to_add(tmp_path: Path) -> None:
    """np.savetxt writes no header: read as one, its first row would become the column names
    and be lost from the data."""
    path = tmp_path / "savetxt.csv"
    np.savetxt(path, np.random.default_rng(0).normal(size=(30, 3)), delimiter=",")
    with pytest.raises(InputError, match=r"first line of .*savetxt.csv is data, not a "
                                         r"header: .*add a header row"):
        sources.read_table(path)
    years = tmp_path / "years.csv"
    years.write_text("1960,1961\n1.5,2.5\n")
    assert sources.read_table(years).column_names == ["1960", "1961"]


@pytest.mark.parametrize(("name", "content", "says"), [
    ("rows.xlsx", b"PK\x03\x04rest", "is a spreadsheet workbook, not a CSV or Parquet file: "
                                       "save the sheet as CSV"),
    ("rows.json", b'[{"a": 1}]', "is JSON, not a CSV or Parquet file: write it as CSV"),
    ("cardio.mat", b"MATLAB 5.0", "scipy.io.loadmat(path)['X']"),
    ("x.npz", b"PK\x03\x04", "numpy.load(path)"),
    ("data.arff", b"@relation x", "scipy.io.arff.loadarff"),
    ("sheet.csv", b"PK\x03\x04rest", "is a zip container (a spreadsheet workbook or an "
                                       "archive), not CSV text"),
    ("old.csv", b"\xd0\xcf\x11\xe0rest", "is an old Excel workbook (.xls), not CSV text"),
    ("excel.csv", b"\xef\xbb\xbfsep=;\r\na;b\r\n1;2\r\n",
     "the first line of {path} is Excel's separator hint (sep=;): delete that line"),
    ("notes.csv", b"# exported 2026-01-01\n# units: mm\na,b\n1,2\n",
     "{path} starts with a comment line (# exported 2026-01-01): delete the lines before"),
])
def test_tables_in_other_formats_are_refused_with_how_to_convert(
        tmp_path: Path, name: str, content: bytes, says: str) -> None:
    """Where the CSV parser would report an empty block, or scoring list every column as
    missing, both readers name the format and the conversion."""
    path = tmp_path / name
    path.write_bytes(content)
    for read in (sources.read_table, stream.table_column_names):
        with pytest.raises(InputError, match=re.escape(says.format(path=path))):
            read(path)


def test_a_header_that_starts_with_a_hash_is_a_header(tmp_path: Path) -> None:
    """'#CHROM<tab>POS' (bioinformatics exports) lines up with the rows: not a comment."""
    path = tmp_path / "calls.tsv"
    path.write_bytes(b"#chrom\tpos\n1\t100\n2\t200\n")
    assert stream.table_column_names(path) == ["#chrom", "pos"]
    assert sources.read_table(path).num_rows == 2


def test_a_compressed_csv_reads_as_the_plain_one_in_every_reader(tmp_path: Path) -> None:
    """Training's whole-file read (its delimiter and decimal mark sniffed from the
    decompressed text), the header read and batch scoring's chunked read of a gzipped ``;``
    export give what the plain file gives."""
    import gzip

    rng = np.random.default_rng(4)
    text = "x;y;colour\n" + "".join(f"{rng.normal():.4f};{rng.normal():.3f};c{i % 3}\n"
                                     for i in range(60)).replace(".", ",")
    plain, packed = tmp_path / "eu.csv", tmp_path / "eu.csv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    assert sources.read_table(packed).equals(sources.read_table(plain))
    assert sources.read_table(packed).schema.field("x").type == pa.float64()
    assert stream.table_column_names(packed) == ["x", "y", "colour"]
    chunks = [pa.concat_tables(iter_table_chunks(p, 0, ["x", "colour"], chunk_rows=16))
              for p in (plain, packed)]
    assert chunks[0].equals(chunks[1])
    assert stream.estimate_rows(packed) == 0  # unknown: its size on disk says little
    assert sources.is_table_file(packed) and sources.is_table_file(tmp_path / "a.TSV")
    assert not sources.is_table_file(tmp_path / "notes.gz")


@pytest.mark.parametrize(("encoding", "newline"), [
    ("utf-16", "\r\n"),  # Excel's "Unicode Text", Windows PowerShell's Out-File
    ("utf-16-be", "\n"),
    ("utf-8", "\r"),  # classic Mac OS line ends
    ("cp1252", "\r"),
])
def test_utf16_and_cr_only_files_read_as_their_utf8_twin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str, newline: str) -> None:
    """Arrow's reader took a CR-only file but batch scoring split records on LF only (the
    whole file one header: "no data rows"); UTF-16 was a parse error everywhere. Streamed in
    odd-sized blocks, a byte pair or a character cut by a block boundary decodes whole."""
    monkeypatch.setattr(stream, "CSV_BLOCK_BYTES", 333)
    text = "größe,city\n" + "".join(f"{i * 0.5},{['Zürich', 'Köln'][i % 2]}\n"
                                     for i in range(200))
    utf8, other = tmp_path / "utf8.csv", tmp_path / "other.csv"
    utf8.write_text(text, encoding="utf-8")
    data = text.replace("\n", newline).encode(encoding)
    other.write_bytes(b"\xfe\xff" + data if encoding == "utf-16-be" else data)
    assert sources.read_table(other).equals(sources.read_table(utf8))
    assert stream.table_column_names(other) == ["größe", "city"]
    chunks = [pa.concat_tables(iter_table_chunks(p, 0, ["größe", "city"], chunk_rows=16))
              for p in (utf8, other)]
    assert chunks[0].equals(chunks[1]) and chunks[0].num_rows == 200


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_windows_encoded_csv_reads_as_its_utf8_twin(tmp_path: Path, encoding: str) -> None:
    """A file as Excel saves "CSV" in Western Europe (cp1252; Latin-1 from older tools):
    every reader gives what the UTF-8 file gives, header names and text values alike,
    instead of failing on the header's first ``ö`` or rejecting every row with one."""
    text = "größe,city,note\n" + "".join(
        f"{i * 0.5},{['Zürich', 'Málaga', 'Köln'][i % 3]},{'façade' if i % 2 else 'x'}\n"
        for i in range(40))
    utf8, other = tmp_path / "utf8.csv", tmp_path / "other.csv"
    utf8.write_text(text, encoding="utf-8")
    other.write_bytes(text.encode(encoding))
    assert dialect.sniff_encoding(other.read_bytes()) == "cp1252"  # Latin-1's text as well
    assert dialect.sniff_encoding(utf8.read_bytes()) == "utf-8"
    assert dialect.sniff_encoding("ö".encode()[:1]) == "utf-8"  # cut mid-character
    assert dialect.sniff_encoding(b"a,\x81") == "latin-1"  # undefined in cp1252
    assert dialect.sniff_encoding("ö,".encode() + b"caf\xe9") == "utf-8"  # one stray byte
    assert sources.read_table(other).equals(sources.read_table(utf8))
    assert stream.table_column_names(other) == ["größe", "city", "note"]
    chunks = [pa.concat_tables(iter_table_chunks(p, 0, ["größe", "city"], chunk_rows=16))
              for p in (utf8, other)]
    assert chunks[0].equals(chunks[1])
    assert dialect.to_utf8(other.read_bytes()) == utf8.read_bytes()
    with pytest.raises(InputError, match="header is not UTF-8"):
        csv_header_names("größe,a\n1,2\n".encode("cp1252"))


def test_decimal_and_float16_parquet_columns_are_numbers(tabular_bundle: Path) -> None:
    """Money columns from a database or Spark arrive as decimal128: training read them as
    Python Decimals and refused them as 'numbers in a format not read'; scoring took the
    slow per-value path. Both now read them as float64, as float16 columns."""
    import decimal

    from anomaly.inference import Scorer
    from tests.conftest import make_tabular

    values = [decimal.Decimal("106.37"), decimal.Decimal("-5.10"), None]
    table = pa.table({"amt": pa.array(values, pa.decimal128(10, 2)),
                      "half": pa.array(np.array([0.5, 1.5, 2.5], np.float16))})
    cols = sources.table_columns(table)
    np.testing.assert_allclose(cols["amt"], [106.37, -5.10, np.nan], rtol=1e-15)
    assert cols["amt"].dtype == cols["half"].dtype == np.float64

    rows = make_tabular(20, seed=5)
    rows.pop("is_anomaly")
    prep = Scorer(tabular_bundle).tabular
    plain, _ = prep.encode_arrow(pa.table(rows), from_csv=False)
    money = pa.table(dict(rows, f0=pa.array([decimal.Decimal(f"{v:.6f}") for v in rows["f0"]],
                                            pa.decimal128(18, 6))))
    x, reasons = prep.encode_arrow(money, from_csv=False)
    assert reasons == [None] * 20
    np.testing.assert_allclose(x, plain, atol=1e-5)


def test_a_line_of_spaces_is_skipped_by_training_as_an_empty_line(tmp_path: Path) -> None:
    """Arrow skips empty lines but failed the whole file on a line of spaces ("Expected 3
    columns, got 1"); other short lines stay an error that names them."""
    path = tmp_path / "edited.csv"
    path.write_text("a,b,c\n1,2,x\n\n   \n3,4,y\n\t\n")
    table = sources.read_table(path)
    assert table.num_rows == 2 and table.column("a").to_pylist() == [1, 3]
    path.write_text("a,b,c\n1,2,x\n5\n")
    with pytest.raises(InputError, match="Expected 3 columns, got 1: 5"):
        sources.read_table(path)


@pytest.mark.parametrize("space", [" ", "\u00a0", "\u202f"])
def test_spaces_between_thousands_in_a_decimal_comma_file(tmp_path: Path, space: str) -> None:
    """French and Nordic exports group thousands with a (no-break) space: 19 232,36. Such
    a column was refused as 'numbers in a format not read'; it reads as its plain twin in
    every reader."""
    rows = [(f"{19000 + 7 * i:,}".replace(",", space) + f",{i % 100:02d}", f"{i % 9},5")
            for i in range(60)]
    grouped, plain = tmp_path / "fr.csv", tmp_path / "plain.csv"
    grouped.write_text("montant;taux\n" + "".join(f"{a};{b}\n" for a, b in rows),
                       encoding="utf-8")
    plain.write_text("montant;taux\n" + "".join(f"{a.replace(space, '')};{b}\n"
                                                for a, b in rows), encoding="utf-8")
    assert sources.read_table(grouped).equals(sources.read_table(plain))
    assert sources.read_table(grouped).schema.field("montant").type == pa.float64()
    chunks = [pa.concat_tables(iter_table_chunks(p, 0, ["montant", "taux"], chunk_rows=16))
              for p in (grouped, plain)]
    assert chunks[0].equals(chunks[1])
    assert sources.read_csv_text(grouped.read_bytes(), ["montant", "taux"]).equals(
        sources.read_csv_text(plain.read_bytes(), ["montant", "taux"]))
