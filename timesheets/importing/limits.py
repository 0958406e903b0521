"""How big an upload may be: the file, its rows, one note (issue 14 item 3).

Each limit is a setting with a default (billing_site/settings.py, docs/deployment.md "Limits")
and each refusal names the limit and the setting, so an operator who needs more knows what to
raise. The file size is checked before the file is read, the row count while it is read (the
rows after the limit are never kept), the note length per row.
"""

from dataclasses import dataclass

from django.conf import settings

DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_ROWS = 200_000
DEFAULT_MAX_NOTE_CHARS = 5_000
# An .xlsx is a zip: its sheets may unpack to far more than the upload. openpyxl reads the
# shared strings whole, so a workbook that unpacks to more than this many times the file-size
# limit is refused before it is opened (a zip bomb would otherwise fill the worker's memory).
XLSX_MAX_EXPANSION = 10


@dataclass(frozen=True)
class ImportLimits:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    max_note_chars: int = DEFAULT_MAX_NOTE_CHARS

    @classmethod
    def from_settings(cls) -> "ImportLimits":
        return cls(
            max_file_bytes=getattr(settings, "IMPORT_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES),
            max_rows=getattr(settings, "IMPORT_MAX_ROWS", DEFAULT_MAX_ROWS),
            max_note_chars=getattr(settings, "IMPORT_MAX_NOTE_CHARS", DEFAULT_MAX_NOTE_CHARS),
        )


def describe_bytes(size: int) -> str:
    """50 MB, 1.5 MB, 900 bytes: how messages show a size."""
    if size >= 1024 * 1024:
        megabytes = size / (1024 * 1024)
        return f"{megabytes:.0f} MB" if megabytes == int(megabytes) else f"{megabytes:.1f} MB"
    if size >= 1024:
        return f"{size // 1024} KB"
    return f"{size} bytes"


def file_too_large_reason(size: int, limits: ImportLimits) -> str | None:
    """The refusal of a file of `size` bytes, or None when it is within the limit."""
    if size <= limits.max_file_bytes:
        return None
    return (
        f"the file is {describe_bytes(size)}, over the limit of "
        f"{describe_bytes(limits.max_file_bytes)} (setting IMPORT_MAX_FILE_BYTES)"
    )


FILE_TOO_LARGE_HINT = "export a shorter date range and import the files one by one"
ROWS_HINT = "export a shorter date range (or raise IMPORT_MAX_ROWS) and import the files one by one"
