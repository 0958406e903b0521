"""The three exports we read (CSV or XLSX), recognised by their header row (never by column
position).

Each format names the columns it reads by their header text; aliases cover older exports,
other spellings (Clockify's `Activity` for `Task`) and localized headers. Headers compare
case-insensitively with whitespace collapsed, unknown columns are ignored, and the order of
columns does not matter (api-notes 1.7, 2.6, 3.6).

Optional columns and what their absence means (docs/sync.md, "CSV and Excel imports"):

- no Billable column: the project's billing setting (non-billable projects give non-billable
  entries, hourly ones billable);
- no Client column: the project is found by its code, or by its name when one project of the
  firm has it (else the row is an error saying to export with the Client column);
- no Invoiced / Approved column: not invoiced, approval unknown;
- no Type column (Clockify): every row is regular time.

Localized headers are marked [G]: Clockify localizes its exports with the user's language;
Harvest's and Toggl Track's exports are English only as far as anyone has seen, so they have no
localized aliases. No localized export file has been seen; each alias is a guess from the
trackers' translated interfaces, and an alias that never matches costs nothing.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from timesheets.importing.errors import ImportRejected, RowError
from timesheets.models import TimeEntry

_SPACES = re.compile(r"\s+")


def header_key(text: str) -> str:
    return _SPACES.sub(" ", text.replace("\ufeff", "")).strip().casefold()


@dataclass(frozen=True)
class ExportFormat:
    source: str  # TimeEntry.Source value
    title: str
    # field -> accepted header names, the first one as the exporter writes it today
    columns: Mapping[str, tuple[str, ...]]
    # Each group needs at least one of its fields present in the header.
    required: tuple[tuple[str, ...], ...]
    # Duration columns in order of preference: a clock value (H:MM:SS) is exact where a
    # decimal column was already rounded by the exporter (0.67 h for 40 minutes).
    duration_fields: tuple[str, ...]
    date_field: str
    start_time_field: str | None = None
    # Whether people are matched by email; otherwise by "First Name Last Name".
    person_by_email: bool = True
    # Whether the start time is part of an entry's identity (timesheets.importing.keys).
    # Harvest's start time is optional and only present when the account tracks timestamps:
    # keeping it out of the key keeps exports with and without it naming the same entries.
    start_time_is_identity: bool = True

    def header_name(self, field_name: str) -> str:
        return self.columns[field_name][0]

    def describe_group(self, group: tuple[str, ...]) -> str:
        return " or ".join(repr(self.header_name(name)) for name in group)

    def required_columns(self) -> str:
        return ", ".join(self.describe_group(group) for group in self.required)


HARVEST = ExportFormat(
    source=TimeEntry.Source.HARVEST,
    title='Harvest "Detailed time"',
    columns={
        "date": ("Date",),
        "client": ("Client",),
        "project": ("Project",),
        "project_code": ("Project Code",),
        "task": ("Task",),
        "notes": ("Notes",),
        "hours": ("Hours",),
        "billable": ("Billable?", "Billable"),
        "invoiced": ("Invoiced?", "Invoiced"),
        "approved": ("Approved?", "Approved"),
        "first_name": ("First Name",),
        "last_name": ("Last Name",),
        # Only when the account tracks timestamps (Harvest support) [G on the header names].
        "start_time": ("Start Time", "Started At"),
        "end_time": ("End Time", "Ended At"),
    },
    required=(
        ("date",),
        ("project",),
        ("task",),
        ("notes",),
        ("hours",),
        ("first_name",),
        ("last_name",),
    ),
    duration_fields=("hours",),
    date_field="date",
    start_time_field="start_time",
    person_by_email=False,
    start_time_is_identity=False,
)

CLOCKIFY = ExportFormat(
    source=TimeEntry.Source.CLOCKIFY,
    title='Clockify "Detailed report"',
    # English first (as exported today), then German, French and Spanish [G].
    columns={
        "project": ("Project", "Projekt", "Projet", "Proyecto"),
        "client": ("Client", "Kunde", "Cliente"),
        "notes": ("Description", "Beschreibung", "Descripción"),
        # Workspaces can rename tasks; "Activity" is what real exports call them.
        "task": ("Task", "Activity", "Aufgabe", "Tâche", "Tarea"),
        "user": ("User", "Benutzer", "Utilisateur", "Usuario"),
        "email": ("Email", "E-Mail", "E-mail", "Correo electrónico"),
        "type": ("Type", "Typ", "Tipo"),
        "billable": ("Billable", "Abrechenbar", "Facturable"),
        "invoiced": ("Invoiced", "Abgerechnet", "Facturé", "Facturado"),
        # Not in any export seen; read if an export carries it [G].
        "approved": ("Approved", "Approval status", "Approval"),
        "start_date": ("Start Date", "Startdatum", "Date de début", "Fecha de inicio"),
        "start_time": ("Start Time", "Startzeit", "Heure de début", "Hora de inicio"),
        "duration_clock": ("Duration (h)", "Dauer (h)", "Durée (h)", "Duración (h)"),
        "duration_decimal": (
            "Duration (decimal)",
            "Dauer (dezimal)",
            "Durée (décimal)",
            "Duración (decimal)",
        ),
    },
    required=(
        ("project",),
        ("notes",),
        ("task",),
        ("email",),
        ("start_date",),
        ("start_time",),
        ("duration_clock", "duration_decimal"),
    ),
    duration_fields=("duration_clock", "duration_decimal"),
    date_field="start_date",
    start_time_field="start_time",
)

TOGGL = ExportFormat(
    source=TimeEntry.Source.TOGGL,
    title='Toggl Track "Detailed"',
    # Toggl's detailed export carries no invoiced or approval column (api-notes 3.6).
    columns={
        "user": ("User",),
        "email": ("Email",),
        "client": ("Client",),
        "project": ("Project",),
        "task": ("Task",),
        "notes": ("Description",),
        "billable": ("Billable",),
        "start_date": ("Start date",),
        "start_time": ("Start time",),
        "duration": ("Duration",),
    },
    required=(
        ("email",),
        ("project",),
        ("task",),
        ("notes",),
        ("start_date",),
        ("start_time",),
        ("duration",),
    ),
    duration_fields=("duration",),
    date_field="start_date",
    start_time_field="start_time",
)

FORMATS: tuple[ExportFormat, ...] = (HARVEST, CLOCKIFY, TOGGL)


@dataclass(frozen=True)
class Layout:
    """Where one file keeps the fields of its format."""

    format: ExportFormat
    positions: Mapping[str, int]  # field -> column index
    headers: Mapping[str, str] = field(default_factory=dict)  # field -> header as in the file
    width: int = 0

    @property
    def duration_field(self) -> str:
        return next(name for name in self.format.duration_fields if name in self.positions)

    def column(self, field_name: str) -> str:
        """The column's name as the file spells it, for messages."""
        return self.headers.get(field_name) or self.format.header_name(field_name)

    def has(self, field_name: str) -> bool:
        return field_name in self.positions


def _positions(
    fmt: ExportFormat, header: list[str], header_line: int
) -> tuple[dict[str, int], list[RowError]]:
    index_of: dict[str, list[int]] = {}
    for index, text in enumerate(header):
        index_of.setdefault(header_key(text), []).append(index)
    positions: dict[str, int] = {}
    duplicates: list[RowError] = []
    for name, aliases in fmt.columns.items():
        found = sorted(
            {index for alias in aliases for index in index_of.get(header_key(alias), [])}
        )
        if len(found) > 1:
            names = [header[index].strip() for index in found]
            if len({header_key(name) for name in names}) == 1:
                reason = f"the header has the column {names[0]!r} twice"
            else:
                reason = (
                    f"the header has {' and '.join(repr(name) for name in names)}, "
                    "which are one column"
                )
            duplicates.append(
                RowError(
                    row=header_line,
                    column=names[0],
                    reason=reason,
                    hint="keep one of them and import the file again",
                )
            )
        if found:
            positions[name] = found[0]
    return positions, duplicates


def _missing_groups(fmt: ExportFormat, positions: Mapping[str, int]) -> list[tuple[str, ...]]:
    return [group for group in fmt.required if not any(name in positions for name in group)]


def detect_layout(header: list[str], *, header_line: int = 1) -> Layout:
    """The format of a file from its header row. Raises ImportRejected naming what is missing
    from the closest format when no format has all of its required columns."""
    candidates = []
    for fmt in FORMATS:
        positions, duplicates = _positions(fmt, header, header_line)
        missing = _missing_groups(fmt, positions)
        if not missing:
            if duplicates:
                raise ImportRejected(duplicates)
            return Layout(
                format=fmt,
                positions=positions,
                headers={name: header[index].strip() for name, index in positions.items()},
                width=len(header),
            )
        share_found = 1 - len(missing) / len(fmt.required)
        candidates.append((share_found, fmt, missing))
    # Ties go to the earlier format; max() keeps the first of equal keys.
    share_found, closest, missing = max(candidates, key=lambda candidate: candidate[0])
    if share_found >= 0.5:
        raise ImportRejected(
            [
                RowError(
                    row=header_line,
                    column=closest.header_name(group[0]),
                    reason=f"missing column {closest.describe_group(group)}"
                    f" of a {closest.title} export",
                    hint="export the report again with all columns",
                )
                for group in missing
            ]
        )
    raise ImportRejected(
        [
            RowError(
                row=header_line,
                column=None,
                reason="unrecognised header: not a Harvest, Clockify or Toggl Track export",
                hint=f"the closest, {closest.title}, needs the columns "
                f"{closest.required_columns()}",
            )
        ]
    )
