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

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from timesheets.importing.formats import Layout
from timesheets.importing.matching import Directory, name_key
from timesheets.importing.rows import ParsedRow
from timesheets.models import Client, Person, Project


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


def _saved(make: type[Person] | type[Client] | type[Project], **values: object) -> object | None:
    """The new row, or None when the database refuses it (a unique name or code taken)."""
    try:
        with transaction.atomic():  # a savepoint: a refusal leaves the import's transaction
            return make.objects.create(**values)
    except IntegrityError:
        return None


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

    def _people(self, directory: Directory, rows: list[ParsedRow]) -> bool:
        if not self.layout.format.person_by_email:
            return False
        made = False
        for row in rows:
            key = name_key(row.email)
            if not key or key in directory.people:
                continue
            try:
                validate_email(row.email)
            except ValidationError:
                continue  # the row stays "unknown person"
            name = (row.user_name or row.email.split("@")[0])[:200]
            person = _saved(Person, email=row.email, name=name)
            if isinstance(person, Person):
                directory.people[key] = [person]
                self.created.people.append(f"{name} <{row.email}>")
                made = True
        return made

    def _clients(self, directory: Directory, rows: list[ParsedRow]) -> bool:
        made = False
        for row in rows:
            key = name_key(row.client_name)
            if not key or key in directory.clients:
                continue
            client = _saved(Client, name=" ".join(row.client_name.split())[:200])
            if isinstance(client, Client):
                directory.clients[key] = [client]
                self.created.clients.append(client.name)
                made = True
        return made

    def _projects(self, directory: Directory, rows: list[ParsedRow]) -> bool:
        made = False
        for row in rows:
            found = directory.clients.get(name_key(row.client_name))
            if not found or not (row.project_code or row.project_name):
                continue
            client = found[0]
            code_key, name = name_key(row.project_code), " ".join(row.project_name.split())
            if code_key:
                if code_key in directory.projects_by_code:
                    continue
                values = {"code": row.project_code[:50], "name": (name or row.project_code)[:200]}
            else:
                if (client.pk, name_key(name)) in directory.projects_by_name:
                    continue
                values = {"name": name[:200]}
            project = _saved(Project, client=client, billing=Project.Billing.HOURLY, **values)
            if not isinstance(project, Project):
                continue
            if code_key:
                directory.projects_by_code[code_key] = [project]
            directory.projects_by_name[(client.pk, name_key(project.name))] = project
            self.created.projects.append(f"{client.name} / {project}")
            made = True
        return made
