"""`import_entries --create-missing`: the people, clients and projects a file names that the
firm does not know yet are created from it (issue 11, onboarding without a hand-written rules
file), instead of each row naming them being an error.

Created, inside the import's transaction (a refused file creates nothing):
- a client for each unknown Client cell;
- a project for each unknown project of a known or created client: by its code (named by the
  Project cell, else the code), else by its name; hourly, as the rules file's default;
- a person for each unknown email (Clockify, Toggl), named by the User cell (else the email's
  local part). Harvest's export names people without an email, and a person needs one: an
  unknown Harvest person stays an error, whose hint says to add them to the rules file.

Not created, so still errors: a project of a file without a Client column (its client is not
known), a code of another client's project, a name shared by two people, an invalid email,
and a project whose name its client already has under another code.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower

from timesheets.errors import TimesheetError
from timesheets.importing.formats import Layout
from timesheets.importing.matching import Directory, name_key
from timesheets.importing.rows import ParsedRow
from timesheets.models import Client, ExternalPerson, ExternalProject, Person, Project

# The defaults of what is created, said once: the review page lists them beside each record.
PROJECT_BILLING = Project.Billing.HOURLY  # as the rules file's default for a project
DEFAULTS = {
    "client": "the firm's default policy, rates and invoice settings (no client policy)",
    "project": "billed hourly, at the firm's rates",
    "person": "no role (the firm's rates for everyone apply)",
}

Kind = Literal["client", "project", "person"]


@dataclass(frozen=True)
class NewRecord:
    """One client, project or person created (or to be created, on a review page)."""

    kind: Kind
    label: str

    @property
    def defaults(self) -> str:
        return DEFAULTS[self.kind]


@dataclass
class Created:
    """What a file created, by name, in the order created."""

    people: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """ "created 1 client (Acme), 2 projects (Acme / ACME-LIT Litigation, ...)" or ""."""
        parts = []
        for names, one, many in (
            (self.clients, "client", "clients"),
            (self.projects, "project", "projects"),
            (self.people, "person", "people"),
        ):
            if names:
                noun = one if len(names) == 1 else many
                parts.append(f"{len(names)} {noun} ({', '.join(names)})")
        return f"created {', '.join(parts)}" if parts else ""

    def __bool__(self) -> bool:
        return bool(self.people or self.clients or self.projects)

    def records(self) -> list[NewRecord]:
        """Clients, then projects, then people: the review page's rows."""
        kinds: tuple[tuple[Kind, list[str]], ...] = (
            ("client", self.clients),
            ("project", self.projects),
            ("person", self.people),
        )
        return [NewRecord(kind, label) for kind, labels in kinds for label in labels]

    def within(self, approved: "Created") -> bool:
        """Whether everything here was listed in `approved` (case-insensitively)."""
        return all(
            {name_key(label) for label in mine} <= {name_key(label) for label in theirs}
            for mine, theirs in (
                (self.people, approved.people),
                (self.clients, approved.clients),
                (self.projects, approved.projects),
            )
        )

    def as_json(self) -> dict[str, list[str]]:
        return {"people": self.people, "clients": self.clients, "projects": self.projects}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Created":
        return cls(
            people=[str(name) for name in data.get("people", [])],
            clients=[str(name) for name in data.get("clients", [])],
            projects=[str(name) for name in data.get("projects", [])],
        )


class ReviewNeeded(TimesheetError):
    """The import would create clients, projects or people nobody has reviewed yet: it was
    rolled back, and `created` lists what it would have created (the admin shows it for
    confirmation, then imports again with it approved)."""

    def __init__(self, created: Created) -> None:
        self.created = created
        super().__init__(f"the file names what the firm does not know: {created.summary()}")


M = TypeVar("M", Person, Client, Project)


def _saved(make: type[M], **values: object) -> M | None:
    """The new row, or None when the database refuses it (a unique name or code taken)."""
    try:
        with transaction.atomic():  # a savepoint: a refusal leaves the import's transaction
            return make.objects.create(**values)
    except IntegrityError:
        return None


# The one way a client, project or person is created from what a tracker names: the file
# import (`MissingCreator`) and the sync's unmapped users and projects (`create_for_tracker`)
# both call these, so both give the same defaults and the same labels.


def create_client(*, name: str, created: Created) -> Client | None:
    """A client of this name (whitespace collapsed), or None if the name is taken."""
    client = _saved(Client, name=" ".join(name.split())[:200])
    if client is not None:
        created.clients.append(client.name)
    return client


def create_project(*, client: Client, code: str, name: str, created: Created) -> Project | None:
    """An hourly project of `client`, by its code (named by `name`, else the code) or by its
    name alone; None if the code or the client's project name is taken."""
    name = " ".join(name.split())
    values = {"code": code.strip()[:50], "name": (name or code.strip())[:200]}
    if not values["name"]:
        return None
    project = _saved(Project, client=client, billing=PROJECT_BILLING, **values)
    if project is not None:
        created.projects.append(f"{client.name} / {project}")
    return project


def create_person(*, email: str, name: str, created: Created) -> Person | None:
    """A person of this email, named `name` (else the email's local part); None for an invalid
    email or one taken."""
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        return None
    name = (" ".join(name.split()) or email.split("@")[0])[:200]
    person = _saved(Person, email=email, name=name)
    if person is not None:
        created.people.append(f"{name} <{email}>")
    return person


class MissingCreator:
    """Creates, for a chunk's rows that name something unknown, what `Directory` lacks."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.created = Created()

    def create(self, directory: Directory, rows: list[ParsedRow]) -> None:
        """Create what the rows name and `directory` lacks, and add it to `directory`."""
        self._people(directory, rows)
        if self.layout.has("client"):
            self._clients(directory, rows)
            self._projects(directory, rows)

    def _people(self, directory: Directory, rows: list[ParsedRow]) -> None:
        if not self.layout.format.person_by_email:
            return
        for row in rows:
            key = name_key(row.email)
            if not key or key in directory.people:
                continue
            # An invalid email makes no person: the row stays "unknown person".
            person = create_person(email=row.email, name=row.user_name, created=self.created)
            if person is not None:
                directory.people[key] = [person]

    def _clients(self, directory: Directory, rows: list[ParsedRow]) -> None:
        for row in rows:
            key = name_key(row.client_name)
            if not key or key in directory.clients:
                continue
            client = create_client(name=row.client_name, created=self.created)
            if client is not None:
                directory.clients[key] = [client]

    def _projects(self, directory: Directory, rows: list[ParsedRow]) -> None:
        for row in rows:
            found = directory.clients.get(name_key(row.client_name))
            if not found or not (row.project_code or row.project_name):
                continue
            client = found[0]
            code_key, name = name_key(row.project_code), " ".join(row.project_name.split())
            if code_key and code_key in directory.projects_by_code:
                continue
            if not code_key and (client.pk, name_key(name)) in directory.projects_by_name:
                continue
            project = create_project(
                client=client,
                code=row.project_code if code_key else "",
                name=name or row.project_code,
                created=self.created,
            )
            if project is None:
                continue
            if code_key:
                directory.projects_by_code[code_key] = [project]
            directory.projects_by_name[(client.pk, name_key(project.name))] = project


# The sync's side: a tracker's unmapped users and projects (ExternalPerson, ExternalProject,
# whose entries wait as HeldEntry) get the firm's people and projects made for them.


def _person_by_email(email: str) -> Person | None:
    return (
        Person.objects.annotate(key=Lower("email")).filter(key=email.strip().lower()).first()
        if email.strip()
        else None
    )


def _client_by_name(name: str) -> Client | None:
    return Client.objects.annotate(key=Lower("name")).filter(key=name_key(name)).first()


def _project_of(client: Client, *, code: str, name: str) -> Project | None:
    """The project the tracker's names already denote: by code, else by name in the client."""
    if code.strip():
        return Project.objects.annotate(key=Lower("code")).filter(key=name_key(code)).first()
    return client.projects.annotate(key=Lower("name")).filter(key=name_key(name)).first()


@dataclass
class TrackerOnboarding:
    """What `create_for_tracker` made, and the tracker records it could not make anything for
    (with why), so the review page can say so."""

    created: Created = field(default_factory=Created)
    mapped: int = 0
    not_created: list[str] = field(default_factory=list)


def create_for_tracker(
    *, people: Iterable[ExternalPerson], projects: Iterable[ExternalProject]
) -> TrackerOnboarding:
    """Map each unmapped tracker user and project to a person or project of the firm, creating
    (with the defaults above) those the firm lacks, in one transaction. A user is matched by
    email; a project by code, else by client and name; a project without a client (internal
    time in Toggl and Clockify) or a code of another client's project is not created, nor a
    person without a valid email. The caller syncs the connections again, which releases the
    waiting entries."""
    done = TrackerOnboarding()
    with transaction.atomic():
        for person in people:
            if person.person_id is None:
                _map_person(person, done)
        for project in projects:
            if project.project_id is None:
                _map_project(project, done)
    return done


def _map_person(external: ExternalPerson, done: TrackerOnboarding) -> None:
    person = _person_by_email(external.email) or create_person(
        email=external.email, name=external.name, created=done.created
    )
    if person is None:
        done.not_created.append(f"{external.name or external.external_id}: no valid email")
        return
    external.person, external.matched_by = person, ExternalPerson.MatchedBy.ADMIN
    external.save(update_fields=["person", "matched_by"])
    done.mapped += 1


def _map_project(external: ExternalProject, done: TrackerOnboarding) -> None:
    label = external.name or external.code or external.external_id
    if not external.client_name.strip():
        done.not_created.append(f"{label}: no client in the tracker (internal time)")
        return
    client = _client_by_name(external.client_name) or create_client(
        name=external.client_name, created=done.created
    )
    if client is None:
        done.not_created.append(f"{label}: client {external.client_name!r} cannot be created")
        return
    project = _project_of(client, code=external.code, name=external.name)
    if project is not None and project.client_id != client.pk:
        done.not_created.append(
            f"{label}: code {external.code!r} belongs to client {project.client}"
        )
        return
    if project is None and not (external.name.strip() or external.code.strip()):
        done.not_created.append(f"{label}: the tracker gives it no name or code")
        return
    project = project or create_project(
        client=client, code=external.code, name=external.name, created=done.created
    )
    if project is None:
        done.not_created.append(f"{label}: its name or code is taken")
        return
    external.project, external.matched_by = project, ExternalProject.MatchedBy.ADMIN
    external.save(update_fields=["project", "matched_by"])
    done.mapped += 1


class _RolledBack(TimesheetError):
    """Carries `rolled_back`'s outcome out of the transaction it undoes; never leaves here."""

    def __init__(self, outcome: object) -> None:
        self.outcome = outcome


T = TypeVar("T")


def rolled_back(work: Callable[[], T]) -> T:
    """What `work` returns, its writes rolled back: the review page's list is what confirming
    creates, because it is the same code run in a transaction that is undone."""
    try:
        with transaction.atomic():
            raise _RolledBack(work())
    except _RolledBack as undone:
        return undone.outcome  # type: ignore[return-value]
