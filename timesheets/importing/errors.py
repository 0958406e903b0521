"""The one error an import raises, and the located problems it carries."""

from dataclasses import dataclass

from timesheets.errors import TimesheetError


@dataclass(frozen=True)
class RowError:
    """One problem in a file. `row` is the line number in the file (the header is row 1);
    None for problems of the whole file (encoding, no entries)."""

    row: int | None
    column: str | None
    reason: str
    hint: str = ""

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"row {self.row}" if self.row is not None else "",
                f"column {self.column}" if self.column else "",
            )
            if part
        )
        text = f"{self.reason} ({self.hint})" if self.hint else self.reason
        return f"{where}: {text}" if where else text


def _sort_key(error: RowError) -> tuple[int, int]:
    # File-level problems first, then in file order; within a row the order of detection
    # (which follows the columns) is kept because sorted() is stable.
    return (0, 0) if error.row is None else (1, error.row)


class ImportRejected(TimesheetError):
    """A file was refused as a whole: nothing of it was stored."""

    def __init__(self, errors: list[RowError], *, name: str = "") -> None:
        self.errors = sorted(errors, key=_sort_key)
        self.name = name
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.errors)
        subject = self.name or "file"
        errors = "error" if count == 1 else "errors"
        head = f"{subject} rejected, {count} {errors}; nothing was imported:"
        return "\n".join([head, *(f"  {error}" for error in self.errors)])

    def __str__(self) -> str:
        return self.report()
