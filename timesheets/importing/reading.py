"""Bytes of an uploaded export -> a header and rows of text cells, each with its line number.

CSV exports are read as UTF-8 text; Excel exports (.xlsx, which all three trackers offer) are
read with openpyxl, their cells turned into the same text a CSV export holds, so both go through
one header detection and one parser. Anything else is named ("a PDF document", "an old Excel
.xls workbook") and refused with what to export instead.
"""

import codecs
import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
        raise ImportRejected(
            [
                RowError(
                    row=None,
                    column=None,
                    reason=f"not UTF-8: byte 0x{body[error.start]:02X} at line {line}",
                    hint=REEXPORT_HINT,
                )
            ]
        ) from None


def _is_blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


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
    limits = limits or ImportLimits()
    # newline="" hands line ends to the csv module untouched, so CRLF and quoted line breaks
    # inside notes are read as the exporter wrote them.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[SourceRow] = []
    start = 1
    try:
        for cells in reader:
            # reader.line_num is the last physical line of this record; the record began on
            # the line after the previous one ended (notes may span lines).
            line, start = start, reader.line_num + 1
            if _is_blank(cells):
                continue
            if header is None:
                header, header_line = cells, line
            else:
                if len(rows) >= limits.max_rows:
                    raise _too_many_rows(limits)
                rows.append(SourceRow(line=line, cells=cells))
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            # The csv module's own ceiling, far above the note limit: a cell this long is a
            # note no one can review, or a file made to fill the server's memory.
            raise ImportRejected(
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
            ) from None
        raise ImportRejected(
            [
                RowError(
                    row=start,  # the first line of the record that could not be read
                    column=None,
                    reason=f"not a readable CSV file: {error}",
                    hint="export the report again as CSV",
                )
            ]
        ) from None
    if header is None:
        raise _empty_file()
    return Table(header=header, header_line=header_line, rows=rows)


def _empty_file() -> ImportRejected:
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


def _zip_kind(content: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
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
    if content.startswith(b"PK\x03\x04"):
        return _zip_kind(content)
    for magic, what in _MAGIC:
        if content.startswith(magic):
            return what
    start = content.removeprefix(codecs.BOM_UTF8)[:4096]
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
    limits = limits or ImportLimits()
    kind = file_kind(content)
    if kind == XLSX:
        return read_workbook(content, limits=limits)
    if kind != TEXT:
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
    return read_table(decode_export(content), limits=limits)


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


def _unpacked_bytes(content: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return sum(info.file_size for info in archive.infolist())


def read_workbook(content: bytes, *, limits: ImportLimits | None = None) -> Table:
    """The first sheet of an .xlsx export as a table; row numbers are the sheet's own."""
    limits = limits or ImportLimits()
    ceiling = limits.max_file_bytes * XLSX_MAX_EXPANSION
    unpacked = _unpacked_bytes(content)
    if unpacked > ceiling:
        raise _workbook_rejected(
            f"the workbook unpacks to {describe_bytes(unpacked)}, over the limit of "
            f"{describe_bytes(ceiling)} ({XLSX_MAX_EXPANSION} x setting IMPORT_MAX_FILE_BYTES)",
            hint="export a shorter date range, or export it as CSV",
        )
    # Imported here: openpyxl costs over half a second of every command's start-up otherwise.
    import openpyxl

    try:
        # read_only streams the sheet row by row; data_only gives cached values, not formulas.
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise _workbook_rejected(
            f"not a readable Excel workbook: {error}", hint="export the report again"
        ) from None
    try:
        if not workbook.worksheets:
            raise _empty_file()
        sheet = workbook.worksheets[0]
        return _sheet_table(sheet.iter_rows(values_only=True), limits)
    finally:
        workbook.close()


def _sheet_table(values: Iterable[tuple[Any, ...]], limits: ImportLimits) -> Table:
    header: list[str] | None = None
    header_line = 0
    rows: list[SourceRow] = []
    for line, row in enumerate(values, start=1):
        cells = [cell_text(value) for value in row]
        while cells and not cells[-1].strip():
            cells.pop()  # a sheet's rows end where its cells do, not at the header's width
        if _is_blank(cells):
            continue
        if header is None:
            header, header_line = cells, line
            continue
        if len(rows) >= limits.max_rows:
            raise _too_many_rows(limits)
        rows.append(SourceRow(line=line, cells=cells + [""] * (len(header) - len(cells))))
    if header is None:
        raise _empty_file()
    return Table(header=header, header_line=header_line, rows=rows)
