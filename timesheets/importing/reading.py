"""Bytes of an uploaded export -> a header and rows of text cells, each with its line number."""

import codecs
import csv
import io
from dataclasses import dataclass

from timesheets.importing.errors import ImportRejected, RowError

REEXPORT_HINT = "re-export the report as UTF-8"


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


def read_table(text: str) -> Table:
    """Split CSV text into its header and rows, skipping blank lines (a trailing newline, an
    empty line that spreadsheet tools add). Raises ImportRejected for text that is not CSV."""
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
                rows.append(SourceRow(line=line, cells=cells))
    except csv.Error as error:
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
        raise ImportRejected(
            [RowError(row=None, column=None, reason="no entries: the file is empty")]
        )
    return Table(header=header, header_line=header_line, rows=rows)
