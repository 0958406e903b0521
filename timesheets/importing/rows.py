"""Rows of text cells -> typed values, one RowError per bad cell, every row checked.

Every error says what to do: the value's own hint when it has one (a duration over 24 hours is
split in the tracker), else its column's (FIELD_HINTS).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time
from functools import partial
from typing import Any, TypeVar, cast

from timesheets.importing.errors import RowError
from timesheets.importing.formats import Layout
from timesheets.importing.limits import ImportLimits
from timesheets.importing.reading import SourceRow
from timesheets.importing.values import (
    EXPECTED_DATES,
    ConflictingDateOrder,
    DateOrder,
    InvalidValue,
    parse_bool,
    parse_date,
    parse_duration_seconds,
    parse_time,
    sniff_date_order,
)

T = TypeVar("T")

FIELD_HINTS = {
    "date": f"correct the date in the tracker, or export with dates as {EXPECTED_DATES}",
    "start_date": f"correct the date in the tracker, or export with dates as {EXPECTED_DATES}",
    "start_time": "correct the start time in the tracker and export again",
    "end_time": "correct the end time in the tracker and export again",
    "hours": "correct the entry's time in the tracker and export again",
    "duration": "correct the entry's time in the tracker and export again",
    "duration_clock": "correct the entry's time in the tracker and export again",
    "duration_decimal": "correct the entry's time in the tracker and export again",
    "billable": "the column holds Yes or No; export the report again",
    "invoiced": "the column holds Yes or No; export the report again",
    "approved": "the column holds Yes or No (or Approved / Pending); export the report again",
    "type": "export the report again in English (Regular, Break, Holiday, Time off)",
}
DEFAULT_HINT = "correct it in the tracker and export the report again"

# Clockify's entry types (api-notes 2.2: REGULAR, BREAK, HOLIDAY, TIME_OFF) as its CSV spells
# them; the localized spellings are [G]. Only regular time is work; the others are skipped and
# counted in the import's summary.
REGULAR_TYPES = frozenset({"", "regular", "regulär", "normal", "régulier", "regular time"})
SKIPPED_TYPES = {
    "break": "Break",
    "pause": "Break",
    "descanso": "Break",
    "holiday": "Holiday",
    "feiertag": "Holiday",
    "férié": "Holiday",
    "jour férié": "Holiday",
    "festivo": "Holiday",
    "time off": "Time off",
    "time-off": "Time off",
    "time_off": "Time off",
    "timeoff": "Time off",
    "abwesenheit": "Time off",
    "absence": "Time off",
    "ausencia": "Time off",
}
APPROVED_WORDS = frozenset({"approved", "genehmigt", "approuvé", "aprobado"})
UNAPPROVED_WORDS = frozenset(
    {"pending", "unapproved", "not approved", "rejected", "unsubmitted", "submitted"}
)


def parse_approval(text: str) -> bool | None:
    """Yes/No, or an approval status word; empty: the export does not say."""
    folded = " ".join(text.split()).casefold()
    if not folded:
        return None
    if folded in APPROVED_WORDS:
        return True
    if folded in UNAPPROVED_WORDS:
        return False
    try:
        return parse_bool(text)
    except InvalidValue:
        raise InvalidValue(
            f"not an approval value: {text!r} (expected Yes, No, Approved or Pending)"
        ) from None


def parse_entry_type(text: str) -> str | None:
    """None for regular time, else the kind of row that is skipped ("Break", "Holiday")."""
    folded = " ".join(text.split()).casefold()
    if folded in REGULAR_TYPES:
        return None
    if folded in SKIPPED_TYPES:
        return SKIPPED_TYPES[folded]
    raise InvalidValue(
        f"unknown entry type {text!r} (expected Regular, Break, Holiday or Time off)"
    )


@dataclass
class ParsedRow:
    """One entry as the file states it. Values that failed to parse are None (and the row has
    an error); names are kept as text until matching turns them into rows of the database."""

    line: int
    date: date | None
    start_time: time | None
    duration_seconds: int | None
    # None: the file has no Billable column (the project's setting decides) or the cell failed.
    tracker_billable: bool | None
    tracker_invoiced: bool
    tracker_approved: bool | None
    notes: str
    task: str
    client_name: str
    project_name: str
    project_code: str
    email: str
    person_name: str
    # Clockify's and Toggl's User column: the name a person created from the file is given.
    user_name: str = ""


def _cell(layout: Layout, cells: list[str], field_name: str) -> str:
    position = layout.positions.get(field_name)
    return cells[position] if position is not None else ""


def _parse_cell(
    layout: Layout,
    row: SourceRow,
    field_name: str,
    parse: Callable[[str], T],
    errors: list[RowError],
) -> T | None:
    try:
        return parse(_cell(layout, row.cells, field_name))
    except InvalidValue as error:
        errors.append(
            RowError(
                row=row.line,
                column=layout.column(field_name),
                reason=str(error),
                hint=error.hint or FIELD_HINTS.get(field_name, DEFAULT_HINT),
            )
        )
        return None


def _parse_optional(
    layout: Layout,
    row: SourceRow,
    field_name: str,
    parse: Callable[[str], T],
    errors: list[RowError],
    *,
    absent: T,
) -> T | None:
    """An optional column: `absent` when the file does not have it."""
    if not layout.has(field_name):
        return absent
    return _parse_cell(layout, row, field_name, parse, errors)


def _width_error(layout: Layout, row: SourceRow) -> RowError | None:
    """Rows must have the header's width: a short row is a cut-off export, and a long one has
    shifted cells whose meaning cannot be known. Trailing empty cells are harmless."""
    count = len(row.cells)
    if count < layout.width:
        reason = f"the row has {count} fields, the header has {layout.width}"
    elif count > layout.width and any(cell.strip() for cell in row.cells[layout.width :]):
        reason = f"the row has {count} fields, the header has {layout.width}"
    else:
        return None
    return RowError(
        row=row.line,
        column=None,
        reason=reason,
        hint="check the quoting of this row, or export the report again",
    )


def _date_order(
    layout: Layout, rows: list[SourceRow], requested: DateOrder | None
) -> tuple[DateOrder | None, RowError | None]:
    if requested is not None:
        return requested, None
    texts = [(row.line, _cell(layout, row.cells, layout.format.date_field)) for row in rows]
    try:
        return sniff_date_order(text for _, text in texts), None
    except ConflictingDateOrder as conflict:
        day_line = next(line for line, text in texts if text.strip() == conflict.day_first)
        month_line = next(line for line, text in texts if text.strip() == conflict.month_first)
        return None, RowError(
            row=max(day_line, month_line),
            column=layout.column(layout.format.date_field),
            reason=f"dates are both day-first ({conflict.day_first!r}, row {day_line}) and "
            f"month-first ({conflict.month_first!r}, row {month_line})",
            hint="export the report again with one date format",
        )


@dataclass
class ParsedFile:
    rows: list[ParsedRow]
    # Rows that are not work (Clockify's Break, Holiday, Time off), by kind: never stored.
    skipped: dict[str, int]
    errors: list[RowError]


def _skipped_kind(layout: Layout, row: SourceRow, errors: list[RowError]) -> str | None:
    if not layout.has("type"):
        return None
    try:
        return parse_entry_type(_cell(layout, row.cells, "type"))
    except InvalidValue as error:
        errors.append(
            RowError(
                row=row.line,
                column=layout.column("type"),
                reason=str(error),
                hint=FIELD_HINTS["type"],
            )
        )
        return None


def _note_error(layout: Layout, row: SourceRow, limits: ImportLimits) -> RowError | None:
    length = len(_cell(layout, row.cells, "notes"))
    if length <= limits.max_note_chars:
        return None
    return RowError(
        row=row.line,
        column=layout.column("notes"),
        reason=f"the note is {length:,} characters, over the limit of "
        f"{limits.max_note_chars:,} (setting IMPORT_MAX_NOTE_CHARS)",
        hint="shorten the note in the tracker and export again",
    )


def screen_row(
    layout: Layout, row: SourceRow, limits: ImportLimits, errors: list[RowError]
) -> tuple[bool, str | None]:
    """Whether the row is to be parsed (its width and note are right, it is work), and the kind
    it is skipped as when it is not work ("Break")."""
    if error := _width_error(layout, row):
        errors.append(error)
        return False, None
    if kind := _skipped_kind(layout, row, errors):
        return False, kind
    if error := _note_error(layout, row, limits):
        errors.append(error)
        return False, None
    return True, None


def date_reader(order: DateOrder | None) -> Callable[[str], date] | None:
    """How the file's dates are read; None when the file proved both orders (no date is read,
    its one error says why)."""
    return partial(parse_date, order=order) if order is not None else None


def parse_row(
    layout: Layout,
    row: SourceRow,
    read_date: Callable[[str], date] | None,
    errors: list[RowError],
) -> ParsedRow:
    """One screened row's values, an error for each cell that does not parse."""
    cells = row.cells
    # Collapsed whitespace: "Ana  Pereira" is the person "Ana Pereira".
    full_name = f"{_cell(layout, cells, 'first_name')} {_cell(layout, cells, 'last_name')}"
    return ParsedRow(
        line=row.line,
        date=_parse_cell(layout, row, layout.format.date_field, read_date, errors)
        if read_date
        else None,
        start_time=_start_time(layout, row, errors),
        duration_seconds=_parse_cell(
            layout, row, layout.duration_field, parse_duration_seconds, errors
        ),
        tracker_billable=_parse_optional(layout, row, "billable", parse_bool, errors, absent=None),
        tracker_invoiced=bool(
            _parse_optional(layout, row, "invoiced", _blank_is_no, errors, absent=False)
        ),
        tracker_approved=_parse_optional(
            layout, row, "approved", parse_approval, errors, absent=None
        ),
        # Notes are stored exactly as tracked: they are evidence for the client.
        notes=_cell(layout, cells, "notes"),
        task=_cell(layout, cells, "task").strip(),
        client_name=_cell(layout, cells, "client").strip(),
        project_name=_cell(layout, cells, "project").strip(),
        project_code=_cell(layout, cells, "project_code").strip(),
        email=_cell(layout, cells, "email").strip(),
        person_name=" ".join(full_name.split()),
        user_name=" ".join(_cell(layout, cells, "user").split()),
    )


def parse_rows(
    *,
    layout: Layout,
    rows: list[SourceRow],
    date_order: DateOrder | None,
    limits: ImportLimits | None = None,
) -> ParsedFile:
    """Every row of a file held whole (the import streams through `RowReader` instead)."""
    limits = limits or ImportLimits()
    errors: list[RowError] = []
    whole_rows: list[SourceRow] = []
    skipped: dict[str, int] = {}
    for row in rows:
        whole, kind = screen_row(layout, row, limits, errors)
        if kind:
            skipped[kind] = skipped.get(kind, 0) + 1
        elif whole:
            whole_rows.append(row)

    order, order_error = _date_order(layout, whole_rows, date_order)
    if order_error:
        errors.append(order_error)
    read_date = date_reader(order)
    parsed = [parse_row(layout, row, read_date, errors) for row in whole_rows]
    return ParsedFile(rows=parsed, skipped=skipped, errors=errors)


def _blank_is_no(text: str) -> bool:
    # Clockify leaves Invoiced empty on workspaces without invoicing.
    return parse_bool(text) if text.strip() else False


def _start_time(layout: Layout, row: SourceRow, errors: list[RowError]) -> time | None:
    """The start time where the format has one. Harvest's Start Time / End Time columns are
    optional and empty for entries tracked as a duration only; the end time is only checked,
    as the duration is the Hours column (a timer paused in between makes them differ)."""
    field_name = layout.format.start_time_field
    if field_name is None or not layout.has(field_name):
        return None
    optional = not layout.format.start_time_is_identity
    if optional and layout.has("end_time") and _cell(layout, row.cells, "end_time").strip():
        _parse_cell(layout, row, "end_time", parse_time, errors)
    if optional and not _cell(layout, row.cells, field_name).strip():
        return None
    return _parse_cell(layout, row, field_name, parse_time, errors)


# --- the streaming import's reader ------------------------------------------------------------

# A value that did not parse, in a RowReader's memo: the row takes the slow path for its errors.
_BAD: Any = object()
_MISSING: Any = object()
# Distinct cell texts remembered per column: the dates, durations and yes/no cells of an export
# repeat, so most rows parse by one dictionary lookup per cell. Bounded, as a hostile file may
# make every cell distinct (then the rest are parsed each time, no more).
MEMO_ENTRIES = 50_000


def _memoized(parse: Callable[[str], T]) -> Callable[[str], T]:
    """`parse`, remembering each text's value, or _BAD for a text it refuses."""
    memo: dict[str, Any] = {}

    def read(text: str) -> T:
        value = memo.get(text, _MISSING)
        if value is _MISSING:
            try:
                value = parse(text)
            except InvalidValue:
                value = _BAD
            if len(memo) < MEMO_ENTRIES:
                memo[text] = value
        return cast(T, value)

    return read


class RowReader:
    """`screen_row` and `parse_row` of one layout, fast for the rows that are right.

    A row is read here with every position and parser settled once per file and each distinct
    cell text parsed once. A row this reader cannot take as it is (a wrong width, a value that
    does not parse, a note over the limit) goes through `screen_row` and `parse_row`, which
    give exactly the errors of the whole-file parser: the fast path never decides an error."""

    def __init__(self, layout: Layout, *, order: DateOrder | None, limits: ImportLimits) -> None:
        self.layout = layout
        self.limits = limits
        self.read_date = date_reader(order)
        positions = layout.positions
        fmt = layout.format
        self.width = layout.width
        self.i_type = positions.get("type")
        self.i_notes = positions.get("notes")
        self.i_date = positions.get(fmt.date_field)
        self.i_duration = positions[layout.duration_field]
        start = fmt.start_time_field
        self.i_start = positions.get(start) if start else None
        self.start_optional = not fmt.start_time_is_identity
        self.i_end = positions.get("end_time") if self.start_optional else None
        self.i_billable = positions.get("billable")
        self.i_invoiced = positions.get("invoiced")
        self.i_approved = positions.get("approved")
        self.i_task = positions.get("task")
        self.i_client = positions.get("client")
        self.i_project = positions.get("project")
        self.i_code = positions.get("project_code")
        self.i_email = positions.get("email")
        self.i_first = positions.get("first_name")
        self.i_last = positions.get("last_name")
        self.i_user = positions.get("user")
        self.type_of = _memoized(parse_entry_type)
        self.date_of = _memoized(self.read_date) if self.read_date else None
        self.time_of = _memoized(parse_time)
        self.duration_of = _memoized(parse_duration_seconds)
        self.bool_of = _memoized(parse_bool)
        self.invoiced_of = _memoized(_blank_is_no)
        self.approval_of = _memoized(parse_approval)

    def read(self, row: SourceRow, errors: list[RowError]) -> ParsedRow | str | None:
        """The row's values; or the kind it is skipped as ("Break"); or None for a row that
        is not parsed (a wrong width, a note over the limit: its error is in `errors`). Cells
        that fail to parse leave their value None and add their error, as `parse_row` does."""
        fast = self._fast(row.cells, row.line)
        if fast is not None:
            return fast
        whole, kind = screen_row(self.layout, row, self.limits, errors)
        if kind:
            return kind
        if not whole:
            return None
        return parse_row(self.layout, row, self.read_date, errors)

    def _fast(self, cells: list[str], line: int) -> ParsedRow | str | None:
        # Each test below sends the row to the slow path on anything unusual.
        if len(cells) != self.width or self.date_of is None:
            return None
        if self.i_type is not None:
            kind = self.type_of(cells[self.i_type])
            if kind is _BAD:
                return None
            if kind:
                return kind
        notes = cells[self.i_notes] if self.i_notes is not None else ""
        if len(notes) > self.limits.max_note_chars:
            return None
        day = self.date_of(cells[self.i_date]) if self.i_date is not None else _BAD
        duration = self.duration_of(cells[self.i_duration])
        if day is _BAD or duration is _BAD:
            return None
        start_time = None
        if self.i_start is not None:
            if self.i_end is not None and cells[self.i_end].strip():
                if self.time_of(cells[self.i_end]) is _BAD:
                    return None
            text = cells[self.i_start]
            if not self.start_optional or text.strip():
                start_time = self.time_of(text)
                if start_time is _BAD:
                    return None
        billable = self.bool_of(cells[self.i_billable]) if self.i_billable is not None else None
        invoiced = (
            self.invoiced_of(cells[self.i_invoiced]) if self.i_invoiced is not None else False
        )
        approved = self.approval_of(cells[self.i_approved]) if self.i_approved is not None else None
        if billable is _BAD or invoiced is _BAD or approved is _BAD:
            return None
        first = cells[self.i_first] if self.i_first is not None else ""
        last = cells[self.i_last] if self.i_last is not None else ""
        return ParsedRow(
            line=line,
            date=day,
            start_time=start_time,
            duration_seconds=duration,
            tracker_billable=billable,
            tracker_invoiced=invoiced,
            tracker_approved=approved,
            notes=notes,
            task=cells[self.i_task].strip() if self.i_task is not None else "",
            client_name=cells[self.i_client].strip() if self.i_client is not None else "",
            project_name=cells[self.i_project].strip() if self.i_project is not None else "",
            project_code=cells[self.i_code].strip() if self.i_code is not None else "",
            email=cells[self.i_email].strip() if self.i_email is not None else "",
            person_name=" ".join(f"{first} {last}".split()),
            user_name=" ".join(cells[self.i_user].split()) if self.i_user is not None else "",
        )

    def is_parsed(self, row: SourceRow) -> bool:
        """Whether `read` parses the row (for sniffing the date order on the rows that count)."""
        cells = row.cells
        if len(cells) == self.width:
            kind = self.type_of(cells[self.i_type]) if self.i_type is not None else None
            notes = cells[self.i_notes] if self.i_notes is not None else ""
            if kind is not _BAD and len(notes) <= self.limits.max_note_chars:
                return not kind
        whole, _ = screen_row(self.layout, row, self.limits, [])
        return whole
