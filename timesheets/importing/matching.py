"""Names in a file -> the people, clients and projects of the database.

All lookups happen up front, a handful of queries for the whole file, never one per row. Nothing
is guessed: people, clients and projects come from the rules file, so an unknown name is an
error whose hint says what to add there.

Two cases are not errors:

- A row with an empty Client cell is *internal time* (Toggl and Clockify allow projects without
  a client). It is matched as `Match.internal`: the service files it under the internal client
  (setting IMPORT_INTERNAL_CLIENT_NAME, default "Internal") and a project of the row's project
  name there, creating either as needed (the project non-billable), and stores the entry as not
  billable; or, with the setting IMPORT_INTERNAL_TIME = "skip", skips it. Either way the
  summary counts it.
- A file without a Client column: each project is found by its code, or by its name when the
  firm has exactly one project of that name; otherwise the row is an error.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from django.db.models import QuerySet
from django.db.models.functions import Lower

from timesheets.importing.errors import RowError
from timesheets.importing.formats import Layout
from timesheets.importing.rows import ParsedRow
from timesheets.models import Client, Person, Project

RULES_HINT = "in the rules file and run import_rules"


def name_key(text: str) -> str:
    """Case-insensitive, whitespace-collapsed: how names are compared."""
    return " ".join(text.split()).lower()


@dataclass(frozen=True)
class Match:
    person: Person
    # None for internal time: the service files it under the internal client.
    client: Client | None
    project: Project | None
    internal_project_name: str = ""

    @property
    def internal(self) -> bool:
        return self.client is None


M = TypeVar("M", Person, Client, Project)


def _by_lowered(queryset: QuerySet[M], field_name: str, keys: Iterable[str]) -> dict[str, list[M]]:
    """Rows whose `field_name` is one of `keys` case-insensitively, grouped by their key."""
    wanted = sorted(set(keys) - {""})
    found: dict[str, list[M]] = {}
    if not wanted:
        return found
    lowered = f"{field_name}_lowered"
    matching = queryset.annotate(**{lowered: Lower(field_name)}).filter(
        **{f"{lowered}__in": wanted}
    )
    for obj in matching:
        found.setdefault(name_key(getattr(obj, field_name)), []).append(obj)
    return found


@dataclass
class Directory:
    people: dict[str, list[Person]]  # by email key or by name key
    clients: dict[str, list[Client]]
    projects_by_code: dict[str, list[Project]]
    projects_by_name: dict[tuple[int, str], Project]
    # Files without a Client column: every project of the firm by name.
    projects_by_bare_name: dict[str, list[Project]]

    @classmethod
    def load(cls, *, layout: Layout, rows: list[ParsedRow]) -> "Directory":
        if layout.format.person_by_email:
            people = _by_lowered(Person.objects.all(), "email", (name_key(r.email) for r in rows))
        else:
            people = _by_lowered(
                Person.objects.all(), "name", (name_key(r.person_name) for r in rows)
            )
        clients = _by_lowered(Client.objects.all(), "name", (name_key(r.client_name) for r in rows))
        projects_by_code = _by_lowered(
            Project.objects.select_related("client"),
            "code",
            (name_key(r.project_code) for r in rows),
        )
        # Projects without a code on the row are found by name within their client.
        client_ids = {found[0].pk for found in clients.values()}
        named = _by_lowered(
            Project.objects.filter(client_id__in=client_ids),
            "name",
            (name_key(r.project_name) for r in rows if not r.project_code),
        )
        projects_by_name = {
            (project.client_id, key): project for key, found in named.items() for project in found
        }
        bare: dict[str, list[Project]] = {}
        if not layout.has("client"):
            bare = _by_lowered(
                Project.objects.select_related("client"),
                "name",
                (name_key(r.project_name) for r in rows if not r.project_code),
            )
        return cls(
            people=people,
            clients=clients,
            projects_by_code=projects_by_code,
            projects_by_name=projects_by_name,
            projects_by_bare_name=bare,
        )


def _match_person(
    layout: Layout, directory: Directory, row: ParsedRow, errors: list[RowError]
) -> Person | None:
    if layout.format.person_by_email:
        column, shown = layout.column("email"), row.email
        empty_reason = "no email"
    else:
        column = f"{layout.column('first_name')}/{layout.column('last_name')}"
        shown = row.person_name
        empty_reason = "no person name"
    if not shown:
        errors.append(
            RowError(
                row=row.line, column=column, reason=empty_reason, hint="export the report again"
            )
        )
        return None
    found = directory.people.get(name_key(shown), [])
    if len(found) == 1:
        return found[0]
    if not found:
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason=f"unknown person {shown!r}",
                hint=f"add them under people: {RULES_HINT}",
            )
        )
    else:
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason=f"{len(found)} people are named {shown!r}",
                hint="give each person a distinct name in the rules file and run import_rules",
            )
        )
    return None


def _match_client(
    layout: Layout, directory: Directory, row: ParsedRow, errors: list[RowError]
) -> Client | None:
    column = layout.column("client")
    found = directory.clients.get(name_key(row.client_name))
    if not found:
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason=f"unknown client {row.client_name!r}",
                hint=f"add it under clients: {RULES_HINT}",
            )
        )
        return None
    # The database keeps client names unique case-insensitively, so there is one.
    return found[0]


def _match_project(
    layout: Layout,
    directory: Directory,
    row: ParsedRow,
    client: Client | None,
    errors: list[RowError],
) -> Project | None:
    of_client = f"of client {client.name!r} " if client else ""
    add_hint = f"add it under projects: {of_client}{RULES_HINT}"
    if row.project_code:
        column = layout.column("project_code")
        found = directory.projects_by_code.get(name_key(row.project_code))
        if not found:
            errors.append(
                RowError(
                    row=row.line,
                    column=column,
                    reason=f"unknown project code {row.project_code!r}",
                    hint=add_hint,
                )
            )
            return None
        project = found[0]  # codes are unique case-insensitively in the database
        if client is not None and project.client_id != client.pk:
            errors.append(
                RowError(
                    row=row.line,
                    column=column,
                    reason=f"project code {row.project_code!r} belongs to client "
                    f"{project.client.name!r}, not {client.name!r}",
                    hint="correct the entry's project in the tracker, or the project's client "
                    "in the rules file",
                )
            )
            return None
        return project

    column = layout.column("project")
    if not row.project_name:
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason="no project",
                hint="assign the entry to a project in the tracker and export again",
            )
        )
        return None
    if client is None:
        return None  # the client's own error says what to fix first
    named = directory.projects_by_name.get((client.pk, name_key(row.project_name)))
    if named is None:
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason=f"unknown project {row.project_name!r} of client {client.name!r}",
                hint=add_hint,
            )
        )
    return named


def _match_project_without_client(
    layout: Layout, directory: Directory, row: ParsedRow, errors: list[RowError]
) -> Project | None:
    """A file without a Client column: the project by its code, else by its unique name."""
    if row.project_code:
        return _match_project(layout, directory, row, None, errors)
    column = layout.column("project")
    if not row.project_name:
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason="no project",
                hint="assign the entry to a project in the tracker and export again",
            )
        )
        return None
    found = directory.projects_by_bare_name.get(name_key(row.project_name), [])
    if len(found) == 1:
        return found[0]
    if not found:
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason=f"unknown project {row.project_name!r} (the file has no Client column)",
                hint=f"add it under projects: {RULES_HINT}, or export the report with its "
                "Client column",
            )
        )
    else:
        clients = ", ".join(sorted(repr(project.client.name) for project in found))
        errors.append(
            RowError(
                row=row.line,
                column=column,
                reason=f"{len(found)} projects are named {row.project_name!r} (of clients "
                f"{clients}) and the file has no Client column",
                hint="export the report again with its Client column",
            )
        )
    return None


NO_PROJECT_NAME = "No project"


def match_rows(*, layout: Layout, rows: list[ParsedRow]) -> tuple[dict[int, Match], list[RowError]]:
    """The person, client and project of every row (keyed by line), and what did not match.
    Rows of internal time (an empty Client cell) match with `client` None."""
    directory = Directory.load(layout=layout, rows=rows)
    errors: list[RowError] = []
    matches: dict[int, Match] = {}
    with_clients = layout.has("client")
    for row in rows:
        person = _match_person(layout, directory, row, errors)
        if with_clients and not row.client_name:
            if person is not None:
                matches[row.line] = Match(
                    person=person,
                    client=None,
                    project=None,
                    internal_project_name=row.project_name or NO_PROJECT_NAME,
                )
            continue
        if with_clients:
            client = _match_client(layout, directory, row, errors)
            project = _match_project(layout, directory, row, client, errors)
        else:
            project = _match_project_without_client(layout, directory, row, errors)
            client = project.client if project is not None else None
        if person is not None and client is not None and project is not None:
            matches[row.line] = Match(person=person, client=client, project=project)
    return matches, errors


@dataclass(frozen=True)
class _Place:
    client: Client | None
    project: Project | None
    internal_project_name: str = ""


class Matcher:
    """`match_rows` for a file that streams by in chunks: each distinct name (person; client
    and project) is looked up once per file, in one `Directory.load` per chunk that brings new
    ones, and its outcome, a match or its errors, is remembered for the rows that repeat it.
    The errors are those of `match_rows`, in its order (person, client, project)."""

    def __init__(
        self,
        layout: Layout,
        *,
        complete: Callable[[Directory, list[ParsedRow]], None] | None = None,
    ) -> None:
        """`complete`, when given, may add to each chunk's directory what its rows name and
        the database lacks (`creating.MissingCreator.create`), before the rows are matched."""
        self.layout = layout
        self.complete = complete
        self.with_clients = layout.has("client")
        self.by_email = layout.format.person_by_email
        self.people: dict[str, Person | list[RowError]] = {}
        self.places: dict[tuple[str, str, str], _Place | list[RowError]] = {}

    def _person_key(self, row: ParsedRow) -> str:
        return row.email if self.by_email else row.person_name

    @staticmethod
    def _place_key(row: ParsedRow) -> tuple[str, str, str]:
        return (row.client_name, row.project_code, row.project_name)

    def prepare(self, rows: list[ParsedRow]) -> None:
        """Look up the names of these rows that no earlier chunk had."""
        new = [
            row
            for row in rows
            if self._person_key(row) not in self.people or self._place_key(row) not in self.places
        ]
        if not new:
            return
        directory = Directory.load(layout=self.layout, rows=new)
        if self.complete is not None:
            self.complete(directory, new)
        for row in new:
            person_key, place_key = self._person_key(row), self._place_key(row)
            if person_key not in self.people:
                errors: list[RowError] = []
                person = _match_person(self.layout, directory, row, errors)
                self.people[person_key] = person if person is not None else errors
            if place_key not in self.places:
                self.places[place_key] = self._place(directory, row)

    def _place(self, directory: Directory, row: ParsedRow) -> _Place | list[RowError]:
        errors: list[RowError] = []
        if self.with_clients and not row.client_name:
            return _Place(None, None, row.project_name or NO_PROJECT_NAME)
        if self.with_clients:
            client = _match_client(self.layout, directory, row, errors)
            project = _match_project(self.layout, directory, row, client, errors)
        else:
            project = _match_project_without_client(self.layout, directory, row, errors)
            client = project.client if project is not None else None
        if client is None or project is None:
            return errors
        return _Place(client, project)

    def match(self, row: ParsedRow, errors: list[RowError]) -> Match | None:
        """The row's match, or None with its errors added (after `prepare` of its chunk)."""
        person = self.people[self._person_key(row)]
        place = self.places[self._place_key(row)]
        if isinstance(person, Person) and isinstance(place, _Place):
            return Match(person, place.client, place.project, place.internal_project_name)
        line = row.line
        for found in (person, place):
            if isinstance(found, list):
                errors.extend(replace(error, row=line) for error in found)
        return None
