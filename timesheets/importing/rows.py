"""Rows of text cells -> typed values, one RowError per bad cell, every row checked."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time
from functools import partial
from typing import TypeVar

from timesheets.importing.errors import RowError
from timesheets.importing.formats import Layout
from timesheets.importing.reading import SourceRow
from timesheets.importing.values import (
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


@dataclass
class ParsedRow:
    """One entry as the file states it. Values that failed to parse are None (and the row has
    an error); names are kept as text until matching turns them into rows of the database."""

    line: int
    date: date | None
    start_time: time | None
    duration_seconds: int | None
    tracker_billable: bool | None
    notes: str
    task: str
    client_name: str
    project_name: str
    project_code: str
    email: str
    person_name: str


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
        errors.append(RowError(row=row.line, column=layout.column(field_name), reason=str(error)))
        return None


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


def parse_rows(
    *, layout: Layout, rows: list[SourceRow], date_order: DateOrder | None
) -> tuple[list[ParsedRow], list[RowError]]:
    errors: list[RowError] = []
    whole_rows: list[SourceRow] = []
    for row in rows:
        if error := _width_error(layout, row):
            errors.append(error)
        else:
            whole_rows.append(row)

    order, order_error = _date_order(layout, whole_rows, date_order)
    if order_error:
        errors.append(order_error)

    fmt = layout.format
    read_date = partial(parse_date, order=order) if order is not None else None
    duration_field = layout.duration_field
    parsed: list[ParsedRow] = []
    for row in whole_rows:
        cells = row.cells
        # Collapsed whitespace: "Ana  Pereira" is the person "Ana Pereira".
        full_name = f"{_cell(layout, cells, 'first_name')} {_cell(layout, cells, 'last_name')}"
        parsed.append(
            ParsedRow(
                line=row.line,
                date=_parse_cell(layout, row, fmt.date_field, read_date, errors)
                if read_date
                else None,
                start_time=(
                    _parse_cell(layout, row, fmt.start_time_field, parse_time, errors)
                    if fmt.start_time_field
                    else None
                ),
                duration_seconds=_parse_cell(
                    layout, row, duration_field, parse_duration_seconds, errors
                ),
                tracker_billable=_parse_cell(layout, row, "billable", parse_bool, errors),
                # Notes are stored exactly as tracked: they are evidence for the client.
                notes=_cell(layout, cells, "notes"),
                task=_cell(layout, cells, "task").strip(),
                client_name=_cell(layout, cells, "client").strip(),
                project_name=_cell(layout, cells, "project").strip(),
                project_code=_cell(layout, cells, "project_code").strip(),
                email=_cell(layout, cells, "email").strip(),
                person_name=" ".join(full_name.split()),
            )
        )
    return parsed, errors
