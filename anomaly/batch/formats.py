"""What a table file must be before it is parsed: the formats that are read by converting
them first (a workbook, JSON, MATLAB, ARFF, NumPy...), each refused with the line that
converts it, and the first lines that are not a header (data, Excel's ``sep=;`` hint, a
``#`` comment). Where the CSV parser would report an empty block or every model column
missing, these say what the file is and what to do."""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from pathlib import Path

from anomaly.errors import InputError

#: Table formats people have their data in that are read by converting them first: suffix
#: -> (what it is, how to convert it). Named so that the error says what to do, where the CSV
#: parser would report an empty block or a missing column.
_CONVERT = "pandas.DataFrame(X).to_csv('rows.csv', index=False)"
OTHER_FORMATS: dict[str, tuple[str, str]] = {
    **dict.fromkeys((".xlsx", ".xlsm", ".xls", ".ods"), (
        "a spreadsheet workbook", "save the sheet as CSV (UTF-8) or Parquet")),
    **dict.fromkeys((".json", ".jsonl", ".ndjson"), (
        "JSON", "write it as CSV, e.g. pandas.read_json(path).to_csv('rows.csv', index=False)"
        " (add lines=True for JSON lines)")),
    ".mat": ("a MATLAB file", f"load it with X = scipy.io.loadmat(path)['X'], then {_CONVERT}"),
    ".arff": ("an ARFF file", "load it with X = pandas.DataFrame(scipy.io.arff.loadarff(path)"
              "[0]), then X.to_csv('rows.csv', index=False)"),
    **dict.fromkeys((".npy", ".npz"), (
        "a NumPy array file", f"load it with X = numpy.load(path) (a .npz: ['X']), then "
        f"{_CONVERT}")),
    **dict.fromkeys((".feather", ".arrow", ".ipc"), (
        "an Arrow IPC file", "write it as Parquet: pyarrow.parquet.write_table("
        "pyarrow.feather.read_table(path), 'rows.parquet')")),
    **dict.fromkeys((".pkl", ".pickle", ".h5", ".hdf5"), (
        "a pickle or HDF5 file", "load it with pandas and write it with to_csv or to_parquet")),
    ".zip": ("a zip archive", "unzip it and give the CSV inside"),
}
#: Leading bytes of files that are not text: a zip container (xlsx, ods, npz) and OLE (xls).
_BINARY_MAGIC = {b"PK\x03\x04": "a zip container (a spreadsheet workbook or an archive)",
                 b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls)"}


#: Excel's first line naming the separator of a "CSV" it writes or reads (``sep=;``).
_SEP_HINT = re.compile(rb"sep=.?", re.IGNORECASE)


def refuse_other_format(path: Path) -> None:
    """InputError for a file whose suffix names a format of :data:`OTHER_FORMATS`."""
    suffix = path.suffix.lower()
    if suffix in OTHER_FORMATS:
        what, how = OTHER_FORMATS[suffix]
        raise InputError(f"{path} is {what}, not a CSV or Parquet file: {how}")


def refuse_binary(path: Path, magic: bytes) -> None:
    """InputError for a file read as CSV whose first four bytes say it is not text."""
    if magic in _BINARY_MAGIC:
        raise InputError(f"{path} is {_BINARY_MAGIC[magic]}, not CSV text: save the table "
                         "as CSV (UTF-8) or Parquet")


def refuse_lines_before_header(path: Path, head: bytes) -> None:
    """InputError for a CSV (``head``: its first bytes, decompressed) whose first line is
    Excel's separator hint or a ``#`` comment rather than its header."""
    lines = [line.strip() for line in head.lstrip(b"\xef\xbb\xbf").split(b"\n", 64)[:64]]
    first = lines[0]
    second = next((line for line in lines[1:] if not line.startswith(b"#")), b"")
    if _SEP_HINT.fullmatch(first):
        raise InputError(f"the first line of {path} is Excel's separator hint "
                         f"({first.decode('ascii', 'replace')}): delete that line, the "
                         "separator is read from the header")
    # a comment, not a header such as "#CHROM\tPOS": its fields do not line up with the
    # first line that is not one
    sep = max(b",;\t|", key=second.count)
    if first.startswith(b"#") and first.count(sep) != second.count(sep):
        shown = first[:40].decode("utf-8", "replace")
        raise InputError(f"{path} starts with a comment line ({shown}): delete the lines "
                         "before the header row")


#: A header name that is a number as a CSV writer prints one: ``-1.5``, ``2,5``, ``1e-03``.
_NUMBER_NAME = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?")


def header_is_data(names: list[str], expected: Collection[str] = (),
                   numeric: Collection[str] | None = None) -> bool:
    """Whether a CSV's first line is a row of data rather than names, as ``np.savetxt`` and
    ``df.to_csv(header=False)`` write files: every name is a number, and they do not
    increase as a header of years, numbered sensors or wavelengths does (``1960,1961``,
    ``0,1,2``, ``400.5,401.0``). Read as a header, the first row would be lost and the
    others scored against columns named by its values. Given the names a model
    ``expected``, a line with none of them and numbers for at least half its names is data
    too (a row with text fields in it); so is one whose ``numeric`` columns (two or more, the
    columns read as numbers below it) are all headed by numbers that do not increase, as a
    data row with text fields is (``0.5,1.2,red``), where a header names the numbers."""
    def numbers_of(texts: list[str]) -> list[float]:
        return [float(n.replace(",", ".")) for n in texts if _NUMBER_NAME.fullmatch(n)]

    def falls(numbers: list[float]) -> bool:
        return any(a >= b for a, b in itertools.pairwise(numbers))

    stripped = [n.strip() for n in names]
    numbers = numbers_of(stripped)
    if expected and not set(expected) & set(names) and 2 * len(numbers) >= len(names):
        return True
    over_numbers = [n.strip() for n in names if numeric is not None and n in numeric]
    if len(over_numbers) >= 2 and len(numbers_of(over_numbers)) == len(over_numbers):
        return falls(numbers_of(over_numbers))
    if not stripped or len(numbers) < len(stripped):
        return False
    return falls(numbers)
