"""Bytes of an uploaded export -> a header and rows of text cells, each with its line number.

CSV exports are read as UTF-8 text; Excel exports (.xlsx, which all three trackers offer) are
read with openpyxl, their cells turned into the same text a CSV export holds, so both go through
one header detection and one parser. Anything else is named ("a PDF document", "an old Excel
.xls workbook") and refused with what to export instead.

`iter_records` streams a file (a seekable binary stream) record by record, so that an import
never holds the whole file or all its rows: the header first, then the rows, each with its line.
`read_export` and `read_table` collect the same records into a `Table`, for small inputs.
"""

import codecs
import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from timesheets.importing.errors import ImportRejected, RowError
from timesheets.importing.limits import ROWS_HINT, XLSX_MAX_EXPANSION, ImportLimits, describe_bytes

REEXPORT_HINT = "re-export the report as UTF-8"
WHAT_TO_EXPORT = (
    'export the Harvest "Detailed time", Clockify "Detailed report" or Toggl Track "Detailed" '
    "report as CSV or Excel (.xlsx)"
)
CSV_FIELD_LIMIT = csv.field_size_limit()


@dataclass(frozen=True)
class SourceRow:
    line: int  # where the record starts in the file; the header is line 1
    cells: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    header_line: int
    rows: list[SourceRow]


def decode_export(content: bytes) -> str:
    """The text of a UTF-8 export, with or without a BOM (Toggl writes one).

    Anything else is refused rather than guessed: a latin-1 guess turns a real UTF-8 file with
    one broken byte into silently wrong names and notes, and every tracker exports UTF-8.
    """
    body = content.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body.count(b"\n", 0, error.start) + 1
        raise _not_utf8(body[error.start], line) from None


# Bytes read at a time when a stream is scanned whole (hash, UTF-8 check).
READ_BYTES = 1024 * 1024


def _not_utf8(byte: int, line: int) -> ImportRejected:
    return ImportRejected(
        [
            RowError(
                row=None,
                column=None,
                reason=f"not UTF-8: byte 0x{byte:02X} at line {line}",
                hint=REEXPORT_HINT,
            )
        ]
    )


def utf8_error(stream: IO[bytes]) -> ImportRejected | None:
    """The refusal of a stream that is not UTF-8, naming the first bad byte and its line (as
    `decode_export` does for bytes), or None. Reads the stream in blocks from its start."""
    stream.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0  # before the block being decoded
    first = True
    while True:
        block = stream.read(READ_BYTES)
        if first:
            block, first = block.removeprefix(codecs.BOM_UTF8), False
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as error:
            # The decoder prepends the bytes of a sequence cut by the previous block; they are
            # never newlines, so `error.object` is counted from where `newlines` stops.
            data = error.object
            return _not_utf8(data[error.start], newlines + data.count(b"\n", 0, error.start) + 1)
        if not block:
            return None
        newlines += block.count(b"\n")


def _is_blank(cells: list[str]) -> bool:
    # A loop, not all() over a generator: this runs for every row of every file.
    for cell in cells:
        if cell.strip():
            return False
    return True


def _too_many_rows(limits: ImportLimits) -> ImportRejected:
    return ImportRejected(
        [
            RowError(
                row=None,
                column=None,
                reason=f"the file has more than {limits.max_rows:,} rows, over the limit "
                "(setting IMPORT_MAX_ROWS)",
                hint=ROWS_HINT,
            )
        ]
    )


def read_table(text: str, *, limits: ImportLimits | None = None) -> Table:
    """Split CSV text into its header and rows, skipping blank lines (a trailing newline, an
    empty line that spreadsheet tools add). Raises ImportRejected for text that is not CSV, and
    as soon as the rows pass `limits.max_rows` (the rest of the file is never kept)."""
    # newline="" hands line ends to the csv module untouched, so CRLF and quoted line breaks
    # inside notes are read as the exporter wrote them.
    return _table(_csv_records(io.StringIO(text, newline=""), limits or ImportLimits()))


def _table(records: Iterator[SourceRow]) -> Table:
    header = next(records, None)
    if header is None:
        raise empty_file()
    return Table(header=header.cells, header_line=header.line, rows=list(records))


def _csv_records(lines: Iterable[str], limits: ImportLimits) -> Iterator[SourceRow]:
    """The header, then each row, of CSV text given line by line (blank lines skipped)."""
    reader = csv.reader(lines, strict=True)
    seen_header = False
    rows = 0
    start = 1
    try:
        for cells in reader:
            # reader.line_num is the last physical line of this record; the record began on
            # the line after the previous one ended (notes may span lines).
            line, start = start, reader.line_num + 1
            if _is_blank(cells):
                continue
            if seen_header:
                if rows >= limits.max_rows:
                    raise _too_many_rows(limits)
                rows += 1
            seen_header = True
            yield SourceRow(line=line, cells=cells)
    except csv.Error as error:
        raise _unreadable_csv(error, start, limits) from None


def _unreadable_csv(error: csv.Error, start: int, limits: ImportLimits) -> ImportRejected:
    if "field larger than field limit" in str(error):
        # The csv module's own ceiling, far above the note limit: a cell this long is a
        # note no one can review, or a file made to fill the server's memory.
        return ImportRejected(
            [
                RowError(
                    row=start,
                    column=None,
                    reason=f"a cell of this row is over {CSV_FIELD_LIMIT:,} characters",
                    hint=f"notes may have at most {limits.max_note_chars:,} characters "
                    "(setting IMPORT_MAX_NOTE_CHARS): shorten it in the tracker and export "
                    "again",
                )
            ]
        )
    return ImportRejected(
        [
            RowError(
                row=start,  # the first line of the record that could not be read
                column=None,
                reason=f"not a readable CSV file: {error}",
                hint="export the report again as CSV",
            )
        ]
    )


def empty_file() -> ImportRejected:
    return ImportRejected(
        [
            RowError(
                row=None,
                column=None,
                reason="no entries: the file is empty",
                hint="choose a date range with entries and export the report again",
            )
        ]
    )


# --- what a file is ---------------------------------------------------------------------------

XLSX = "xlsx"
TEXT = "text"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old Excel .xls workbook (or another Office 97-2003 file)",
    ),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\xff\xfe", 'UTF-16 text (Excel\'s "Unicode text")'),
    (b"\xfe\xff", 'UTF-16 text (Excel\'s "Unicode text")'),
)


def _zip_kind(stream: IO[bytes]) -> str:
    try:
        with zipfile.ZipFile(stream) as archive:
            names = set(archive.namelist())
            if "xl/workbook.xml" in names:
                return XLSX
            if "mimetype" in names:
                mimetype = archive.read("mimetype")[:100].decode("ascii", "replace")
                if "opendocument.spreadsheet" in mimetype:
                    return "an OpenDocument spreadsheet (.ods)"
                return f"an OpenDocument file ({mimetype})"
            if "word/document.xml" in names:
                return "a Word document (.docx)"
            if any(name.endswith(".csv") for name in names):
                return "a ZIP archive of CSV files (unpack it and import each file)"
    except zipfile.BadZipFile:
        return "a damaged ZIP archive"
    return "a ZIP archive"


def file_kind(content: bytes) -> str:
    """XLSX, TEXT (read as CSV), or what else the file is, for the refusal."""
    return stream_kind(io.BytesIO(content))


# Enough of a file's start to tell what it is.
HEAD_BYTES = 4096


def stream_kind(stream: IO[bytes]) -> str:
    """`file_kind` of a seekable binary stream, reading its start (a ZIP's directory too)."""
    stream.seek(0)
    head = stream.read(HEAD_BYTES + len(codecs.BOM_UTF8))
    if head.startswith(b"PK\x03\x04"):
        stream.seek(0)
        return _zip_kind(stream)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    start = head.removeprefix(codecs.BOM_UTF8)[:HEAD_BYTES]
    first = start.lstrip()[:1]
    if first == b"<":
        return "an HTML or XML page"
    if first in (b"{", b"["):
        return "a JSON document"
    if b"\x00" in start:
        return "a binary file"
    return TEXT


def read_export(content: bytes, *, limits: ImportLimits | None = None) -> Table:
    """The header and rows of an upload, CSV or XLSX; anything else is refused, named."""
    stream = io.BytesIO(content)
    limits = limits or ImportLimits()
    return _table(iter_records(stream, kind=check_kind(stream), limits=limits))


def check_kind(stream: IO[bytes]) -> str:
    """XLSX or TEXT; anything else is refused, named, with what to export instead."""
    kind = stream_kind(stream)
    if kind not in (XLSX, TEXT):
        raise ImportRejected(
            [
                RowError(
                    row=None,
                    column=None,
                    reason=f"not a CSV or Excel export: the file is {kind}",
                    hint=WHAT_TO_EXPORT,
                )
            ]
        )
    return kind


def iter_records(stream: IO[bytes], *, kind: str, limits: ImportLimits) -> Iterator[SourceRow]:
    """The header, then every row, of a seekable binary stream of `kind` (`check_kind`), read
    from its start; blank rows are skipped. Raises ImportRejected as soon as the file proves
    unreadable or too long. Every pass reads the stream again: nothing of it is kept.

    A file that is not UTF-8 is named by its first bad byte even when an error of its CSV
    comes first, as `decode_export` of the whole file would."""
    stream.seek(0)
    if kind == XLSX:
        yield from _workbook_records(stream, limits)
        return
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _csv_records(text, limits)
    except UnicodeDecodeError:
        raise utf8_error(stream) or _not_utf8(0, 0) from None
    except ImportRejected as rejected:
        raise utf8_error(stream) or rejected from None
    finally:
        text.detach()  # the caller's stream stays open


# --- Excel workbooks --------------------------------------------------------------------------


def cell_text(value: Any) -> str:
    """An Excel cell as the text a CSV export of the same report holds."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Excel keeps 15 significant digits; this gives back what the sheet shows (0.17, not
        # 0.17000000000000001) and goes on as text, so no float reaches the parsers.
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.timedelta):
        # A duration cell ([h]:mm:ss): whole seconds, as H:MM:SS.
        seconds = round(value.total_seconds())
        sign = "-" if seconds < 0 else ""
        hours, rest = divmod(abs(seconds), 3600)
        return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return str(value)


def _workbook_rejected(reason: str, hint: str = WHAT_TO_EXPORT) -> ImportRejected:
    return ImportRejected([RowError(row=None, column=None, reason=reason, hint=hint)])


def _unpacked_bytes(stream: IO[bytes]) -> int:
    with zipfile.ZipFile(stream) as archive:
        return sum(info.file_size for info in archive.infolist())


def read_workbook(content: bytes, *, limits: ImportLimits | None = None) -> Table:
    """The first sheet of an .xlsx export as a table; row numbers are the sheet's own."""
    return _table(_workbook_records(io.BytesIO(content), limits or ImportLimits()))


def _workbook_records(stream: IO[bytes], limits: ImportLimits) -> Iterator[SourceRow]:
    ceiling = limits.max_file_bytes * XLSX_MAX_EXPANSION
    unpacked = _unpacked_bytes(stream)
    if unpacked > ceiling:
        raise _workbook_rejected(
            f"the workbook unpacks to {describe_bytes(unpacked)}, over the limit of "
            f"{describe_bytes(ceiling)} ({XLSX_MAX_EXPANSION} x setting IMPORT_MAX_FILE_BYTES)",
            hint="export a shorter date range, or export it as CSV",
        )
    # Imported here: openpyxl costs over half a second of every command's start-up otherwise.
    import openpyxl

    stream.seek(0)
    try:
        # read_only streams the sheet row by row; data_only gives cached values, not formulas.
        workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise _workbook_rejected(
            f"not a readable Excel workbook: {error}", hint="export the report again"
        ) from None
    try:
        if not workbook.worksheets:
            raise empty_file()
        sheet = workbook.worksheets[0]
        yield from _sheet_records(sheet.iter_rows(values_only=True), limits)
    finally:
        workbook.close()


def _sheet_records(values: Iterable[tuple[Any, ...]], limits: ImportLimits) -> Iterator[SourceRow]:
    width = 0
    rows = 0
    for line, row in enumerate(values, start=1):
        cells = [cell_text(value) for value in row]
        while cells and not cells[-1].strip():
            cells.pop()  # a sheet's rows end where its cells do, not at the header's width
        if _is_blank(cells):
            continue
        if not width:
            width = len(cells)
            yield SourceRow(line=line, cells=cells)
            continue
        if rows >= limits.max_rows:
            raise _too_many_rows(limits)
        rows += 1
        yield SourceRow(line=line, cells=cells + [""] * (width - len(cells)))
