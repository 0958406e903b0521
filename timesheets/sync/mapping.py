"""Tracker users and projects mapped to the firm's people and projects: by email for people (so
the same person in Harvest and Clockify is one person), by code or client and project name for
projects, or by hand in the admin."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models.functions import Lower

from timesheets.importing.matching import name_key
from timesheets.models import ExternalPerson, ExternalProject, Person, Project, TrackerConnection
from timesheets.sync.remote import Reader, RemoteProject, RemoteUser


def people_by_email(emails: Iterable[str]) -> dict[str, Person]:
    wanted = sorted({email.strip().lower() for email in emails if email.strip()})
    if not wanted:
        return {}
    found = Person.objects.annotate(email_key=Lower("email")).filter(email_key__in=wanted)
    return {person.email.lower(): person for person in found}


def match_projects(projects: Sequence[RemoteProject]) -> dict[str, tuple[Project, str]]:
    """Tracker project id -> (project, how): by code first, then by client and project name."""
    codes = {name_key(p.code) for p in projects if p.code.strip()}
    by_code: dict[str, Project] = {}
    if codes:
        for project in (
            Project.objects.select_related("client")
            .annotate(code_key=Lower("code"))
            .filter(code_key__in=codes)
        ):
            by_code[name_key(project.code)] = project
    names = {name_key(p.name) for p in projects if p.name.strip() and p.client_name.strip()}
    by_name: dict[tuple[str, str], Project] = {}
    if names:
        for project in (
            Project.objects.select_related("client")
            .annotate(name_key=Lower("name"))
            .filter(name_key__in=names)
        ):
            by_name[(name_key(project.client.name), name_key(project.name))] = project
    found: dict[str, tuple[Project, str]] = {}
    for remote in projects:
        if remote.code.strip() and (project := by_code.get(name_key(remote.code))):
            found[remote.external_id] = (project, ExternalProject.MatchedBy.CODE)
        elif project := by_name.get((name_key(remote.client_name), name_key(remote.name))):
            found[remote.external_id] = (project, ExternalProject.MatchedBy.NAME)
    return found


def rematch_unmapped(conn: TrackerConnection) -> tuple[int, int]:
    """Map the connection's still unmapped users and projects that now match someone (a person
    or project added since): (people mapped, projects mapped)."""
    people = list(
        ExternalPerson.objects.filter(connection=conn, person__isnull=True).exclude(email="")
    )
    found = people_by_email(p.email for p in people)
    mapped_people = []
    for external in people:
        if person := found.get(external.email.strip().lower()):
            external.person, external.matched_by = person, ExternalPerson.MatchedBy.EMAIL
            mapped_people.append(external)
    ExternalPerson.objects.bulk_update(mapped_people, ["person", "matched_by"])

    projects = list(ExternalProject.objects.filter(connection=conn, project__isnull=True))
    matches = match_projects(
        [RemoteProject(p.external_id, p.name, p.code, p.client_name) for p in projects]
    )
    mapped_projects = []
    for external in projects:
        if external.external_id in matches:
            external.project, external.matched_by = matches[external.external_id]
            mapped_projects.append(external)
    ExternalProject.objects.bulk_update(mapped_projects, ["project", "matched_by"])
    return len(mapped_people), len(mapped_projects)


class RunMappings:
    """The run's view of the connection's mappings: read once per new tracker id, created (and
    matched) when first seen, so a page costs a constant number of queries."""

    def __init__(self, conn: TrackerConnection, reader: Reader) -> None:
        self.conn = conn
        self.reader = reader
        self._people: dict[str, ExternalPerson] = {}
        self._projects: dict[str, ExternalProject] = {}
        self._directory: dict[str, RemoteUser] | None = None

    def people(self, users: Iterable[RemoteUser]) -> dict[str, ExternalPerson]:
        wanted = {user.external_id: user for user in users}
        missing = [key for key in wanted if key not in self._people]
        if missing:
            for external in ExternalPerson.objects.filter(
                connection=self.conn, external_id__in=missing
            ).select_related("person"):
                self._people[external.external_id] = external
            new = [wanted[key] for key in missing if key not in self._people]
            if new and any(not user.email for user in new):
                directory = self._user_directory()
                new = [
                    RemoteUser(
                        user.external_id,
                        user.name or directory.get(user.external_id, user).name,
                        user.email or directory.get(user.external_id, user).email,
                    )
                    for user in new
                ]
            if new:
                by_email = people_by_email(user.email for user in new)
                created = []
                for user in new:
                    person = by_email.get(user.email.strip().lower())
                    created.append(
                        ExternalPerson(
                            connection=self.conn,
                            external_id=user.external_id,
                            name=user.name[:200],
                            email=user.email.strip()[:254],
                            person=person,
                            matched_by=ExternalPerson.MatchedBy.EMAIL if person else "",
                        )
                    )
                for external in ExternalPerson.objects.bulk_create(created):
                    self._people[external.external_id] = external
        return {key: self._people[key] for key in wanted}

    def projects(self, projects: Iterable[RemoteProject]) -> dict[str, ExternalProject]:
        wanted = {project.external_id: project for project in projects}
        missing = [key for key in wanted if key not in self._projects]
        if missing:
            for external in ExternalProject.objects.filter(
                connection=self.conn, external_id__in=missing
            ).select_related("project__client"):
                self._projects[external.external_id] = external
            new = [wanted[key] for key in missing if key not in self._projects]
            if new:
                matches = match_projects(new)
                created = []
                for remote in new:
                    project, how = matches.get(remote.external_id, (None, ""))
                    created.append(
                        ExternalProject(
                            connection=self.conn,
                            external_id=remote.external_id,
                            name=(remote.name or ("" if remote.external_id else "(no project)"))[
                                :200
                            ],
                            code=remote.code[:50],
                            client_name=remote.client_name[:200],
                            project=project,
                            matched_by=how,
                        )
                    )
                for external in ExternalProject.objects.bulk_create(created):
                    self._projects[external.external_id] = external
        return {key: self._projects[key] for key in wanted}

    def _user_directory(self) -> dict[str, RemoteUser]:
        if self._directory is None:
            self._directory = self.reader.directory()
        return self._directory
