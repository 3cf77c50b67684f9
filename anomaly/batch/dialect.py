"""How a CSV file is written, read from its own bytes: where its records end, its field
separator, its decimal mark and its text encoding. Every CSV reader (training's whole-file
read, batch scoring's streamed blocks, the service's CSV bodies) asks these, so that a file
means the same whichever way it comes in."""

from __future__ import annotations

import codecs
import contextlib
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

#: Field separators recognised in a CSV header, in order of preference on a tie.
CSV_DELIMITERS = (",", ";", "\t", "|")
_QUOTED = re.compile(rb'"(?:[^"]|"")*"')


def sniff_delimiter(header: bytes) -> str:
    """The field separator of a CSV file from its header record: whichever of ``,`` ``;``
    tab ``|`` occurs most often outside quotes (``,`` on a tie or when none does).

    Spreadsheets in many locales write ``;`` (the decimal mark being ``,``) and exports from
    databases often use tabs; reading such a file with ``,`` gives one column whose name is
    the whole header, which no later message can explain."""
    end = record_end(header, first=True)
    bare = _QUOTED.sub(b"", header if end < 0 else header[:end])
    counts = [bare.count(d.encode()) for d in CSV_DELIMITERS]
    return CSV_DELIMITERS[counts.index(max(counts))] if max(counts) else ","


#: A multi-byte UTF-8 character (``ö`` is C3 B6). Single-byte text almost never holds one:
#: in cp1252 it reads as two or more odd characters such as ``Ã¶``.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                            rb"|[\xf0-\xf4][\x80-\xbf]{3}")


def sniff_encoding(head: bytes) -> str:
    """The text encoding of a CSV from its head: ``utf-8`` when the head is UTF-8 (a
    character cut at its end counted as UTF-8) or holds UTF-8 characters beside a stray
    byte (transcoding would garble the good ones), else ``cp1252``, the Windows code page of
    Western Europe (a superset of Latin-1's printable characters, which Excel writes for
    "CSV" in those locales), or ``latin-1`` when a byte is one cp1252 leaves undefined.

    Read as UTF-8, such a file fails on its first ``ö`` in the header (no column names at
    all) or makes every row with one a bad row; both single-byte encodings decode any
    block on its own, so a file can be transcoded as it streams. ``utf-16`` when the head
    starts with its byte-order mark (Excel's "Unicode Text", Windows PowerShell's
    ``Out-File``)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(head) - 3:
            return "utf-8"
    if _UTF8_SEQUENCE.search(head):  # UTF-8 text with a stray byte: those rows are rejects
        return "utf-8"
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def to_utf8(data: bytes, encoding: str | None = None, head: bool = False) -> bytes:
    """CSV bytes as UTF-8, transcoded from ``encoding`` (default: sniffed from the first
    64 KiB) when that is another one. ``head``: the bytes are a file's first block, whose
    last character may be cut (left out)."""
    encoding = encoding or sniff_encoding(data[:1 << 16])
    if encoding == "utf-8":
        return data
    return codecs.getincrementaldecoder(encoding)().decode(data, final=not head).encode()


_COMMA_NUMBER = re.compile(
    rb"[+-]?(?:\d+|\d{1,3}(?:(?:\.|\s|\xc2\xa0|\xe2\x80\xaf)\d{3})+),\d+(?:[eE][+-]?\d+)?")
_POINT_NUMBER = re.compile(rb"[+-]?(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?")
#: ``1.234`` or ``12.345.678``: points between groups of three digits, as decimal-comma
#: locales group thousands; ``1.234`` alone could be either, so it decides nothing.
_POINT_GROUPS = re.compile(rb"[+-]?\d{1,3}(?:\.\d{3})+")
#: A whole field that is a number with a decimal comma (Arrow regex syntax, RE2).
_COMMA_FIELD = r"^(\s*[+-]?\d+),(\d+(?:[eE][+-]?\d+)?\s*)$"
#: A whole field with points between its thousands (``-1.234.567,89``, ``1.234``), RE2.
_GROUPED_FIELD = r"^\s*[+-]?\d{1,3}(\.\d{3})+(,\d+(?:[eE][+-]?\d+)?)?\s*$"
#: The same with spaces between the thousands (``1 234,56``; French and Nordic exports use
#: a no-break space U+00A0 or a narrow one U+202F), as RE2 reads text (UTF-8) and binary
#: (bytes) columns; and the separators to drop from such a field.
_SPACE_GROUPS = {
    False: (r"^\s*[+-]?\d{1,3}(( |\x{00a0}|\x{202f})\d{3})+(,\d+(?:[eE][+-]?\d+)?)?\s*$",
            r" |\x{00a0}|\x{202f}"),
    True: (r"^\s*[+-]?\d{1,3}(( |\xc2\xa0|\xe2\x80\xaf)\d{3})+(,\d+(?:[eE][+-]?\d+)?)?\s*$",
           r" |\xc2\xa0|\xe2\x80\xaf"),
}
#: Records of a CSV's head that :func:`sniff_decimal` reads.
_SNIFF_RECORDS = 200


def sniff_decimal(data: bytes) -> str:
    """The decimal mark of a CSV's numbers from its first records (``data``: the file's
    head, header included): ``,`` when the fields are separated by ``;`` tab or ``|``, some
    unquoted fields are numbers written with a decimal comma (``10,25``, ``1.234,5``) and
    none with a decimal point (``1.234`` could be a thousand and counts as neither); else
    ``.``.

    The spreadsheets that write ``;`` between fields do so because their locale writes
    ``,`` in numbers; read with a point, every such column would be text."""
    delimiter = sniff_delimiter(data)
    if delimiter == ",":
        return "."
    comma = point = 0
    for record in data.splitlines()[1:_SNIFF_RECORDS + 1]:
        for field in _QUOTED.sub(b"", record).split(delimiter.encode()):
            field = field.strip()
            comma += _COMMA_NUMBER.fullmatch(field) is not None
            point += (_POINT_NUMBER.fullmatch(field) is not None
                      and _POINT_GROUPS.fullmatch(field) is None)
    return "," if comma and not point else "."


def decimal_points(table: pa.Table) -> pa.Table:
    """A table of raw CSV fields (binary or text) with every field that is a decimal-comma
    number rewritten with a point (``10,25`` -> ``10.25``; ``-1.234,5`` and ``1 234,5`` ->
    ``-1234.5`` and ``1234.5``, the points or spaces between thousands dropped), the other
    fields and columns untouched: how a file
    :func:`sniff_decimal` finds to use ``,`` is read where its columns stay binary (batch
    scoring, the service's CSV bodies), and what training makes of the text columns Arrow's
    reader leaves (it reads ``10,25`` but not ``1.234,5``), so that every way in reads the
    same numbers."""
    return pa.Table.from_arrays(
        [_decimal_points(col) if pa.types.is_binary(col.type) or pa.types.is_string(col.type)
         else col for col in table.columns], names=table.column_names)


def _decimal_points(col: pa.ChunkedArray) -> pa.ChunkedArray:
    grouped = pc.match_substring_regex(col, pattern=_GROUPED_FIELD)
    if pc.any(grouped).as_py():
        col = pc.if_else(grouped, pc.replace_substring(col, pattern=".", replacement=""), col)
    spaced, separator = _SPACE_GROUPS[pa.types.is_binary(col.type)]
    grouped = pc.match_substring_regex(col, pattern=spaced)
    if pc.any(grouped).as_py():
        col = pc.if_else(grouped, pc.replace_substring_regex(col, pattern=separator,
                                                             replacement=""), col)
    return pc.replace_substring_regex(col, pattern=_COMMA_FIELD, replacement=r"\1.\2")


def csv_parse_options(header: bytes, **kwargs: Any) -> pacsv.ParseOptions:
    """Arrow parse options for a CSV whose header record is ``header`` (its delimiter sniffed)."""
    return pacsv.ParseOptions(delimiter=sniff_delimiter(header), **kwargs)


def cr_only(head: bytes) -> bool:
    """Whether a CSV ends its lines with a carriage return alone (classic Mac OS, some Excel
    for Mac exports): no line feed in its head, and a CR. Arrow's reader takes such lines,
    the record splitting of streamed blocks (:func:`record_end`) looks for LF: such bytes
    are read with every CR as an LF."""
    return b"\n" not in head and b"\r" in head


def record_end(buf: bytes, first: bool) -> int:
    """Offset just past the first (or last) newline of ``buf`` that lies outside quotes,
    or -1. ``buf`` starts outside quotes; quotes inside fields are doubled (RFC 4180), so a
    newline is outside quotes when an even number of quotes precedes it."""
    if first:
        pos = buf.find(b"\n")
        while pos >= 0:
            if buf.count(b'"', 0, pos) % 2 == 0:
                return pos + 1
            pos = buf.find(b"\n", pos + 1)
        return -1
    total = buf.count(b'"')
    tail = 0  # quotes after the newline being tried
    pos, prev = buf.rfind(b"\n"), len(buf)
    while pos >= 0:
        tail += buf.count(b'"', pos + 1, prev)
        if (total - tail) % 2 == 0:
            return pos + 1
        pos, prev = buf.rfind(b"\n", 0, pos), pos + 1
    return -1


def numbers_where_all(table: pa.Table) -> pa.Table:
    """Text columns whose every value is now a plain number (a decimal-comma file's
    ``1.234,5`` after :func:`decimal_points`) as float64, as Arrow reads the others."""
    cols = []
    for col in table.columns:
        if pa.types.is_string(col.type):
            # words among them: a text column, as Arrow left it
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                col = col.cast(pa.float64())
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)
