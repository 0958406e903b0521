"""The hourly sync of time entries from Harvest v2, Clockify and Toggl Track APIs.

    run = sync_connection(connection_id=3, trigger=SyncRun.Trigger.COMMAND)

One run of one connection:

1. **One at a time.** A PostgreSQL session advisory lock keyed by the connection id is taken
   with `pg_try_advisory_lock`; a second run of the same connection (django-q2 delivers at least
   once and re-runs slow tasks) finds it taken, is recorded as *skipped* and does nothing. The
   lock is held across the run's many page transactions and released at the end, or by
   PostgreSQL itself when a killed worker's connection closes; the next run then marks the dead
   run *abandoned* and starts over from the connection's cursor.
2. **Incremental, with an overlap.** The cursor is the start of the last successful run (of the
   first run of a backfill that took several): the next run asks for what changed since then
   minus `overlap_minutes` (Harvest `updated_since`, Toggl `/me?since`), which also absorbs
   clock differences between us and the tracker. The report APIs cannot filter on modification
   (Clockify detailed report, Toggl Reports v3), so there the days since the cursor are re-read.
   The first run reads the rolling window, or from `sync_from`, day range by day range, and
   resumes where it stopped.
3. **Deletions within the rolling window.** Every `window_every_hours` the last `window_days`
   are re-read in full; an entry of this connection dated in that window that the tracker no
   longer lists is marked deleted (`deleted_at`; `TimeEntry.objects` no longer sees it). Toggl's
   `/me?since` also reports deletions itself (`server_deleted_at`).
4. **Upsert by (source, external id)** through the CSV import's `upsert_entries`, page by page,
   each page in its own transaction with the run's counters, so a stopped run keeps what it
   stored and a re-run finds it unchanged: nothing is lost or duplicated. An entry on an
   approved invoice (`locked`) that changes or disappears is not altered: the source's version
   (or `{"deleted": true}`) is recorded in `pending_source_change` and the entry is reported
   *frozen*, so billing flags its invoice.
5. **Mapping.** A tracker's users and projects are mapped to the firm's people and projects
   (`ExternalPerson`, `ExternalProject`): by email for people (so the same person in Harvest
   and Clockify is one person), by code or client and project name for projects, or by hand
   in the admin. Entries of an unmapped user or project wait as `HeldEntry` rows, listed in the
   admin, and are stored by the first run after both are mapped.
6. **Running timers are skipped**; they are stored once stopped.
7. **After each page commits**, a django-q2 task (`timesheets.tasks.announce_synced_entries`)
   enqueued in the page's own transaction sends `entries_imported`, so billing classifies the
   new and changed entries and flags drafts and approved invoices; it cannot be lost between
   the commit and the enqueue.

Errors: a refused token stops the connection (status *stopped*, with the tracker's words) until
someone saves a new token; transient failures (5xx, timeouts) are retried by the adapters and,
when they persist, fail the run and mark the connection *failing* (it is tried again every
run); a rate limit or quota whose retry hint is too long to wait defers the connection until
then (`retry_after`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db import connection as db
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone
from django_q.tasks import async_task

from integrations import clockify, harvest, toggl
from integrations.encryption import SecretUnreadable, decrypt, encrypt
from timesheets.importing.matching import name_key
from timesheets.importing.service import (
    BATCH_SIZE,
    EntryValues,
    IncomingEntry,
    UpsertCounts,
    upsert_entries,
)
from timesheets.importing.values import InvalidValue, format_seconds, hours_to_seconds, parse_time
from timesheets.models import (
    MAX_ENTRY_SECONDS,
    ExternalPerson,
    ExternalProject,
    HeldEntry,
    ImportBatch,
    Person,
    Project,
    SyncRun,
    TimeEntry,
    TrackerConnection,
)

logger = logging.getLogger(__name__)

# pg_try_advisory_lock(bigint) key: this namespace in the high 32 bits, the connection id in the
# low 32. The CSV import's lock is one fixed key in the same bigint space, far from these.
SYNC_LOCK_NAMESPACE = 0x53594E43  # "SYNC"
# A schedule that fires a little early still counts the hourly window re-read as due.
WINDOW_SLACK = dt.timedelta(minutes=5)
MAX_ERROR_MESSAGES = 50

AUTH_ERRORS = (harvest.HarvestAuthError, clockify.ClockifyAuthError, toggl.TogglAuthError)
PERMISSION_ERRORS = (harvest.HarvestPermissionDenied,)
RATE_ERRORS = (
    harvest.HarvestRateLimited,
    clockify.ClockifyRateLimited,
    toggl.TogglRateLimited,
    toggl.TogglQuotaExceeded,
)
TRANSIENT_ERRORS = (
    harvest.HarvestUnavailable,
    clockify.ClockifyUnavailable,
    toggl.TogglUnavailable,
)
RESPONSE_ERRORS = (
    harvest.HarvestResponseError,
    clockify.ClockifyResponseError,
    toggl.TogglResponseError,
)


class SyncError(Exception):
    """Base of the sync's own errors."""


class ConnectionMisconfigured(SyncError):
    """The connection's settings cannot work (unknown option, no token...): it is stopped."""


class ConnectionNotSyncable(SyncError):
    """The connection is disabled or stopped; a person has to act before it syncs again."""


# --- options ------------------------------------------------------------------------------------

APIS = {
    TrackerConnection.Kind.HARVEST: ("v2",),
    TrackerConnection.Kind.CLOCKIFY: ("reports", "user"),
    TrackerConnection.Kind.TOGGL: ("reports", "me"),
}
PAGE_SIZES = {  # (default, maximum)
    TrackerConnection.Kind.HARVEST: (2000, 2000),
    TrackerConnection.Kind.CLOCKIFY: (1000, 1000),
    TrackerConnection.Kind.TOGGL: (50, 1000),
}
OPTION_NAMES = ("api", "page_size", "timezone", "hours", "chunk_days")
# Days per listing of a first run or window re-read: Clockify's free plan allows reports of 31
# days; Harvest lists any range, so a year keeps a first run to one request sequence.
CHUNK_DAYS = {
    TrackerConnection.Kind.HARVEST: 366,
    TrackerConnection.Kind.CLOCKIFY: 31,
    TrackerConnection.Kind.TOGGL: 31,
}


@dataclass(frozen=True)
class SyncOptions:
    api: str
    page_size: int
    timezone: ZoneInfo
    # Harvest: bill `hours` as tracked, or the account's `rounded_hours`.
    hours: str
    # Days per listing of a first run or a window re-read (see CHUNK_DAYS).
    chunk_days: int


def sync_options(*, kind: str, options: Any) -> SyncOptions:
    """The connection's options, checked; ConnectionMisconfigured names every problem."""
    if kind not in APIS:
        raise ConnectionMisconfigured(f"unknown tracker kind {kind!r}")
    if not isinstance(options, dict):
        raise ConnectionMisconfigured("options must be a JSON object")
    problems = [f"unknown option {name!r}" for name in sorted(set(options) - set(OPTION_NAMES))]
    apis = APIS[kind]
    api = options.get("api", apis[0])
    if api not in apis:
        problems.append(f"api must be one of {', '.join(apis)}, not {api!r}")
    default_size, max_size = PAGE_SIZES[kind]
    page_size = options.get("page_size", default_size)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size:
        problems.append(f"page_size must be a whole number from 1 to {max_size}")
        page_size = default_size
    elif page_size > max_size:
        problems.append(f"page_size must be at most {max_size}")
    zone_name = options.get("timezone", settings.TIME_ZONE)
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"unknown timezone {zone_name!r}")
        zone = ZoneInfo("UTC")
    hours = options.get("hours", "hours")
    if hours not in ("hours", "rounded_hours"):
        problems.append(f"hours must be 'hours' or 'rounded_hours', not {hours!r}")
    chunk_days = options.get("chunk_days", CHUNK_DAYS[kind])
    if isinstance(chunk_days, bool) or not isinstance(chunk_days, int) or chunk_days < 1:
        problems.append("chunk_days must be a whole number of at least 1")
        chunk_days = CHUNK_DAYS[kind]
    if problems:
        raise ConnectionMisconfigured("invalid options: " + "; ".join(problems))
    return SyncOptions(
        api=api, page_size=page_size, timezone=zone, hours=hours, chunk_days=chunk_days
    )


# --- what every tracker's entries become ------------------------------------------------------


@dataclass(frozen=True)
class RemoteUser:
    external_id: str
    name: str = ""
    email: str = ""


@dataclass(frozen=True)
class RemoteProject:
    external_id: str  # "" for entries without a project
    name: str = ""
    code: str = ""
    client_name: str = ""


@dataclass(frozen=True)
class RemoteEntry:
    external_id: str
    user: RemoteUser
    project: RemoteProject
    task: str
    date: dt.date
    start_time: dt.time | None
    duration_seconds: int
    notes: str
    billable: bool
    running: bool = False
    deleted: bool = False
    updated_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["date"] = self.date.isoformat()
        data["start_time"] = self.start_time.isoformat() if self.start_time else None
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteEntry:
        return cls(
            **{
                **data,
                "user": RemoteUser(**data["user"]),
                "project": RemoteProject(**data["project"]),
                "date": dt.date.fromisoformat(data["date"]),
                "start_time": dt.time.fromisoformat(data["start_time"])
                if data["start_time"]
                else None,
                "updated_at": dt.datetime.fromisoformat(data["updated_at"])
                if data["updated_at"]
                else None,
            }
        )


@dataclass
class Listing:
    """One pass over a tracker: its pages, and what a complete pass proves."""

    label: str
    pages: Iterator[list[RemoteEntry]]
    # Every entry dated in this window (inclusive) is in the pages: absence means deleted.
    window: tuple[dt.date, dt.date] | None = None
    # ...of these tracker users only (filled while paging); None: of every user.
    users: set[str] | None = None


class Reader(Protocol):
    """One tracker API's entries, as RemoteEntry pages."""

    warnings: list[str]
    # True for APIs that list the entries changed since a moment (deleted ones included or
    # not); they also have `changed(since)`. The report APIs list entries by date only.
    lists_changes: bool
    # How far back `changed` reaches (None: any age).
    changes_reach: dt.timedelta | None

    def complete(self, start: dt.date, end: dt.date) -> Listing: ...

    def directory(self) -> dict[str, RemoteUser]: ...


def _http_settings() -> dict[str, Any]:
    return {
        "connect_timeout": settings.TRACKER_CONNECT_TIMEOUT_SECONDS,
        "read_timeout": settings.TRACKER_READ_TIMEOUT_SECONDS,
        "max_retries": settings.TRACKER_MAX_RETRIES,
        "backoff_seconds": settings.TRACKER_BACKOFF_SECONDS,
        "max_wait_seconds": settings.TRACKER_MAX_WAIT_SECONDS,
    }


def _local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone)


def _local(moment: dt.datetime, zone: ZoneInfo) -> tuple[dt.date, dt.time]:
    local = moment.astimezone(zone)
    return local.date(), local.time().replace(microsecond=0)


class HarvestReader:
    lists_changes = True
    changes_reach = None

    def __init__(self, conn: TrackerConnection, options: SyncOptions, token: str) -> None:
        self.client = harvest.HarvestClient(
            token=token,
            account_id=conn.account_id,
            user_agent=settings.HARVEST_USER_AGENT,
            base_url=conn.base_url or settings.HARVEST_BASE_URL,
            **_http_settings(),
        )
        self.options = options
        self.sync_from = conn.sync_from
        self.warnings: list[str] = []

    def complete(self, start: dt.date, end: dt.date) -> Listing:
        return Listing(
            label=f"entries dated {start} to {end}",
            pages=self._pages(from_date=start, to_date=end),
            window=(start, end),
        )

    def changed(self, since: dt.datetime) -> Listing:
        return Listing(
            label=f"entries changed since {since:%Y-%m-%d %H:%M} UTC",
            pages=self._pages(updated_since=since, from_date=self.sync_from),
        )

    def directory(self) -> dict[str, RemoteUser]:
        try:
            users = self.client.users()
        except harvest.HarvestPermissionDenied as exc:
            self.warnings.append(f"cannot list Harvest users, people are mapped by hand: {exc}")
            return {}
        return {str(u.id): RemoteUser(str(u.id), u.name, u.email) for u in users}

    def _pages(self, **filters: Any) -> Iterator[list[RemoteEntry]]:
        for page in self.client.time_entry_pages(per_page=self.options.page_size, **filters):
            yield [self._entry(entry) for entry in page]

    def _entry(self, e: harvest.HarvestTimeEntry) -> RemoteEntry:
        hours = e.hours
        if self.options.hours == "rounded_hours" and e.rounded_hours is not None:
            hours = e.rounded_hours
        try:
            start_time = parse_time(e.started_time) if e.started_time else None
        except InvalidValue:
            start_time = None
        return RemoteEntry(
            external_id=str(e.id),
            user=RemoteUser(str(e.user_id), e.user_name),
            project=RemoteProject(
                str(e.project_id) if e.project_id is not None else "",
                e.project_name,
                e.project_code,
                e.client_name,
            ),
            task=e.task_name,
            date=e.spent_date,
            start_time=start_time,
            duration_seconds=hours_to_seconds(hours),
            notes=e.notes,
            billable=e.billable,
            running=e.is_running,
            updated_at=e.updated_at,
        )


class ClockifyReader:
    lists_changes = False
    changes_reach = None

    def __init__(self, conn: TrackerConnection, options: SyncOptions, token: str) -> None:
        self.client = clockify.ClockifyClient(
            api_key=token,
            workspace_id=conn.account_id,
            base_url=conn.base_url or settings.CLOCKIFY_BASE_URL,
            reports_url=conn.reports_url or settings.CLOCKIFY_REPORTS_URL,
            **_http_settings(),
        )
        self.options = options
        self.warnings: list[str] = []
        self._users: list[clockify.ClockifyUser] | None = None

    def complete(self, start: dt.date, end: dt.date) -> Listing:
        zone = self.options.timezone
        first = _local_midnight(start, zone)
        last = _local_midnight(end + dt.timedelta(days=1), zone) - dt.timedelta(milliseconds=1)
        listing = Listing(label=f"entries dated {start} to {end}", pages=iter(()))
        listing.window = (start, end)
        if self.options.api == "reports":
            listing.pages = self._converted(
                self.client.report_pages(start=first, end=last, page_size=self.options.page_size)
            )
        else:
            listing.users = set()
            listing.pages = self._per_user(listing.users, first, last)
        return listing

    def directory(self) -> dict[str, RemoteUser]:
        if self.options.api == "reports":
            return {}  # the detailed report names each entry's user and email
        return {u.id: RemoteUser(u.id, u.name, u.email) for u in self._workspace_users()}

    def _workspace_users(self) -> list[clockify.ClockifyUser]:
        if self._users is None:
            self._users = self.client.users(page_size=min(self.options.page_size, 500))
        return self._users

    def _per_user(
        self, covered: set[str], first: dt.datetime, last: dt.datetime
    ) -> Iterator[list[RemoteEntry]]:
        for user in self._workspace_users():
            covered.add(user.id)
            yield from self._converted(
                self.client.user_time_entry_pages(
                    user, start=first, end=last, page_size=self.options.page_size
                )
            )

    def _converted(
        self, pages: Iterable[list[clockify.ClockifyTimeEntry]]
    ) -> Iterator[list[RemoteEntry]]:
        for page in pages:
            yield [self._entry(entry) for entry in page]

    def _entry(self, e: clockify.ClockifyTimeEntry) -> RemoteEntry:
        day, start_time = _local(e.start, self.options.timezone)
        return RemoteEntry(
            external_id=e.id,
            user=RemoteUser(e.user_id, e.user_name, e.user_email),
            project=RemoteProject(e.project_id, e.project_name, "", e.client_name),
            task=e.task_name,
            date=day,
            start_time=start_time,
            duration_seconds=e.duration_seconds or 0,
            notes=e.description,
            billable=e.billable,
            running=e.is_running,
        )


class _TogglReader:
    def __init__(self, conn: TrackerConnection, options: SyncOptions, token: str) -> None:
        self.client = toggl.TogglClient(
            api_token=token,
            base_url=conn.base_url or settings.TOGGL_BASE_URL,
            reports_url=conn.reports_url or settings.TOGGL_REPORTS_URL,
            **_http_settings(),
        )
        self.workspace_id = conn.account_id
        self.options = options
        self.warnings: list[str] = []

    def directory(self) -> dict[str, RemoteUser]:
        try:
            users = self.client.workspace_users(self.workspace_id)
        except toggl.TogglAuthError as exc:
            self.warnings.append(f"cannot list Toggl users, people are mapped by hand: {exc}")
            return {}
        return {str(u.id): RemoteUser(str(u.id), u.name, u.email) for u in users}

    def _converted(
        self, pages: Iterable[list[toggl.TogglTimeEntry]]
    ) -> Iterator[list[RemoteEntry]]:
        for page in pages:
            yield [self._entry(entry) for entry in page]

    def _entry(self, e: toggl.TogglTimeEntry) -> RemoteEntry:
        day, start_time = _local(e.start, self.options.timezone)
        return RemoteEntry(
            external_id=str(e.id),
            user=RemoteUser(str(e.user_id), e.user_name),
            project=RemoteProject(
                str(e.project_id) if e.project_id is not None else "",
                e.project_name,
                "",
                e.client_name,
            ),
            task=e.task_name,
            date=day,
            start_time=start_time,
            duration_seconds=max(e.duration_seconds, 0),
            notes=e.description,
            billable=e.billable,
            running=e.is_running and e.deleted_at is None,
            deleted=e.deleted_at is not None,
            updated_at=e.updated_at,
        )


class TogglReportsReader(_TogglReader):
    """The workspace's entries, through Reports API v3 (an admin's token)."""

    lists_changes = False
    changes_reach = None

    def complete(self, start: dt.date, end: dt.date) -> Listing:
        # Dates as Toggl reads them: in the workspace's timezone (the `timezone` option).
        pages = self.client.report_pages(
            self.workspace_id, start_date=start, end_date=end, page_size=self.options.page_size
        )
        return Listing(
            label=f"entries dated {start} to {end}",
            pages=self._converted(pages),
            window=(start, end),
        )


class TogglMeReader(_TogglReader):
    """The token owner's own entries, through `/me/time_entries`: one request per run."""

    lists_changes = True
    # Toggl: "for longer than 3 months use the Reports API".
    changes_reach = dt.timedelta(days=90)

    def complete(self, start: dt.date, end: dt.date) -> Listing:
        zone = self.options.timezone
        first = _local_midnight(start, zone)
        after = _local_midnight(end + dt.timedelta(days=1), zone)
        return Listing(
            label=f"entries dated {start} to {end}",
            pages=self._converted([self.client.my_time_entries(start=first, end=after)]),
            window=(start, end),
        )

    def changed(self, since: dt.datetime) -> Listing:
        # Modified since, deleted ones included: no window needed to notice deletions.
        return Listing(
            label=f"entries changed since {since:%Y-%m-%d %H:%M} UTC",
            pages=self._converted([self.client.my_time_entries(since=since)]),
        )


def make_reader(conn: TrackerConnection, options: SyncOptions, token: str) -> Reader:
    if conn.kind == TrackerConnection.Kind.HARVEST:
        return HarvestReader(conn, options, token)
    if conn.kind == TrackerConnection.Kind.CLOCKIFY:
        return ClockifyReader(conn, options, token)
    if options.api == "me":
        return TogglMeReader(conn, options, token)
    return TogglReportsReader(conn, options, token)


# --- mapping tracker users and projects to the firm's people and projects ------------------------


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


class _Mappings:
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


# --- the run ------------------------------------------------------------------------------------

COUNTERS = (
    "pages",
    "fetched",
    "created",
    "updated",
    "deleted",
    "unchanged",
    "frozen",
    "held",
    "running_skipped",
    "errors",
)


@contextmanager
def connection_lock(connection_id: int) -> Iterator[bool]:
    """This session's advisory lock of the connection: True if we hold it, False if another
    session (a sync still running) does. Released on exit, or when the session ends."""
    if not 0 < connection_id < 2**32:
        raise ValueError(f"connection id out of the lock's range: {connection_id}")
    key = (SYNC_LOCK_NAMESPACE << 32) | connection_id
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with db.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
            except DatabaseError:
                # The session is gone, and PostgreSQL released its locks with it.
                logger.warning("could not release the sync lock of connection %s", connection_id)


def sync_connection(*, connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULE) -> SyncRun:
    """Run one sync of one connection now (if no other run of it is running) and return its
    record. Raises ConnectionNotSyncable for a disabled or stopped connection."""
    conn = TrackerConnection.objects.get(pk=connection_id)
    if not conn.is_enabled:
        raise ConnectionNotSyncable(f"{conn.name} is disabled")
    if conn.status == TrackerConnection.Status.STOPPED:
        raise ConnectionNotSyncable(f"{conn.name} is stopped: {conn.status_reason}")
    with connection_lock(conn.pk) as acquired:
        now = timezone.now()
        if not acquired:
            logger.info("sync of %s skipped: another run holds its lock", conn.name)
            return SyncRun.objects.create(
                connection=conn,
                trigger=trigger,
                status=SyncRun.Status.SKIPPED,
                started_at=now,
                finished_at=now,
                progress="another sync of this connection was running; nothing done",
            )
        # Whatever is still "running" died without releasing the lock (a killed worker).
        SyncRun.objects.filter(connection=conn, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.ABANDONED, finished_at=now
        )
        conn.refresh_from_db()
        run = SyncRun.objects.create(
            connection=conn,
            trigger=trigger,
            started_at=now,
            cursor_before=conn.cursor,
            progress="starting",
        )
        _Run(conn, run).execute()
        run.refresh_from_db()
        return run


def due_connections(*, now: dt.datetime | None = None) -> QuerySet[TrackerConnection]:
    """Connections the schedule syncs now: enabled, not stopped, not deferred by a rate limit."""
    now = now or timezone.now()
    return (
        TrackerConnection.objects.filter(is_enabled=True)
        .exclude(status=TrackerConnection.Status.STOPPED)
        .filter(Q(retry_after__isnull=True) | Q(retry_after__lte=now))
    )


def set_token(*, connection: TrackerConnection, token: str) -> None:
    """Store a new token (encrypted) and give a connection stopped by a refused token another
    chance. The caller saves the connection."""
    connection.token_encrypted = encrypt(token.strip())
    connection.token_set_at = timezone.now()
    if connection.status == TrackerConnection.Status.STOPPED:
        connection.status = TrackerConnection.Status.ACTIVE
        connection.status_reason = "new token saved; the next run tries it"
        connection.status_changed_at = timezone.now()
        connection.consecutive_failures = 0


def _chunks(start: dt.date, end: dt.date, days: int) -> Iterator[tuple[dt.date, dt.date]]:
    while start <= end:
        last = min(end, start + dt.timedelta(days=days - 1))
        yield start, last
        start = last + dt.timedelta(days=1)


@dataclass
class _Page:
    """What one page does, decided before anything is written."""

    incoming: list[IncomingEntry] = field(default_factory=list)
    held: list[tuple[RemoteEntry, ExternalPerson, ExternalProject]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    running: int = 0
    problems: list[str] = field(default_factory=list)


class _Run:
    def __init__(self, conn: TrackerConnection, run: SyncRun) -> None:
        self.conn = conn
        self.run = run
        self.batch: ImportBatch | None = None
        self.window_read = False
        self.has_held = False
        self.problems: list[str] = []  # entries that could not be stored
        self.warnings: list[str] = []
        # A frozen entry is reported once per run, however many listings of the run show it.
        self.frozen_seen: set[int] = set()

    # --- outcome ---------------------------------------------------------------------------

    def execute(self) -> None:
        finished = False
        try:
            self._sync()
            self._succeed()
            finished = True
        except AUTH_ERRORS + PERMISSION_ERRORS as exc:
            self._stop(f"the tracker refused the token: {exc}. Save a new token to resume.")
            finished = True
        except SecretUnreadable:
            self._stop(
                "the saved token cannot be decrypted with BILLABLES_ENCRYPTION_KEYS; "
                "save the token again"
            )
            finished = True
        except ConnectionMisconfigured as exc:
            self._stop(f"{exc}. Correct the connection to resume.")
            finished = True
        except RATE_ERRORS as exc:
            self._defer(str(exc), exc.retry_after)
            finished = True
        except TRANSIENT_ERRORS + RESPONSE_ERRORS as exc:
            self._fail(str(exc))
            finished = True
        finally:
            if not finished:
                # Not caught: the error goes on to the worker's log and django-q's record.
                self._fail("the run stopped on an unexpected error (see the worker log)")

    def _finish(self, status: str, message: str = "", *, progress: str | None = None) -> None:
        run = SyncRun.objects.get(pk=self.run.pk)
        messages = list(run.error_messages)
        if message:
            messages = [*messages, message][-MAX_ERROR_MESSAGES:]
        SyncRun.objects.filter(pk=self.run.pk).update(
            status=status,
            finished_at=timezone.now(),
            error_messages=messages,
            errors=F("errors") + (1 if message else 0),
            progress=(progress or f"{SyncRun.Status(status).label}. {run.progress}")[:300],
        )
        logger.info("sync of %s: %s %s", self.conn.name, status, message)

    def _set_status(self, status: str, reason: str, **fields: Any) -> None:
        changed = self.conn.status != status
        TrackerConnection.objects.filter(pk=self.conn.pk).update(
            status=status,
            status_reason=reason,
            **({"status_changed_at": timezone.now()} if changed else {}),
            **fields,
        )

    def _cursor_after(self) -> dt.datetime:
        """Everything changed since this instant minus the overlap is read by the next run."""
        if self.conn.cursor is None and self.conn.backfill_position is not None:
            # A backfill that took several runs: changes made to days read by its first runs
            # are only asked for if the cursor goes back to its first run.
            earlier = SyncRun.objects.filter(
                connection=self.conn, cursor_before__isnull=True, started_at__lt=self.run.started_at
            ).exclude(status=SyncRun.Status.SKIPPED)
            if self.conn.last_success_at:
                earlier = earlier.filter(started_at__gt=self.conn.last_success_at)
            first = earlier.order_by("started_at").values_list("started_at", flat=True).first()
            if first is not None:
                return first
        return self.run.started_at

    def _succeed(self) -> None:
        cursor = self._cursor_after()
        notes = self.warnings + self.problems[:3]
        self._set_status(
            TrackerConnection.Status.ACTIVE,
            ("last run: " + "; ".join(notes))[:1000] if notes else "",
            cursor=cursor,
            last_success_at=timezone.now(),
            consecutive_failures=0,
            retry_after=None,
            backfill_position=None,
            **({"window_checked_at": self.run.started_at} if self.window_read else {}),
        )
        SyncRun.objects.filter(pk=self.run.pk).update(
            cursor_after=cursor,
            error_messages=(self.warnings + self.problems)[-MAX_ERROR_MESSAGES:],
        )
        not_stored = len(self.problems)
        self._finish(
            SyncRun.Status.SUCCEEDED,
            progress="done"
            + (
                f"; {not_stored} entr{'y' if not_stored == 1 else 'ies'} not stored"
                if not_stored
                else ""
            ),
        )

    def _stop(self, reason: str) -> None:
        self._set_status(TrackerConnection.Status.STOPPED, reason)
        self._finish(SyncRun.Status.FAILED, reason)

    def _fail(self, reason: str) -> None:
        failures = self.conn.consecutive_failures + 1
        self._set_status(
            TrackerConnection.Status.FAILING,
            f"{reason} ({failures} failed run{'s' if failures > 1 else ''} in a row; "
            "tried again every run)",
            consecutive_failures=failures,
        )
        self._finish(SyncRun.Status.FAILED, reason)

    def _defer(self, reason: str, seconds: int | None) -> None:
        until = timezone.now() + dt.timedelta(seconds=seconds or 3600)
        TrackerConnection.objects.filter(pk=self.conn.pk).update(
            retry_after=until,
            status_reason=f"{reason}; the schedule resumes after {until:%Y-%m-%d %H:%M} UTC",
        )
        self._finish(SyncRun.Status.RATE_LIMITED, reason)

    # --- reading -----------------------------------------------------------------------------

    def _sync(self) -> None:
        conn = self.conn
        options = sync_options(kind=conn.kind, options=conn.options)
        token = decrypt(conn.token_encrypted)
        if not token:
            raise ConnectionMisconfigured("no token saved")
        self.options = options
        self.reader = make_reader(conn, options, token)
        self.warnings = self.reader.warnings
        self.mappings = _Mappings(conn, self.reader)

        rematch_unmapped(conn)
        self._release_held()
        self.has_held = HeldEntry.objects.filter(connection=conn).exists()

        now = self.run.started_at
        today = now.astimezone(options.timezone).date()
        window_end = today + dt.timedelta(days=1)  # entries may be dated in the future
        window_start = today - dt.timedelta(days=conn.window_days)
        if conn.sync_from:
            window_start = max(window_start, conn.sync_from)

        if conn.cursor is None:
            # First run: read day range by day range, resuming after an earlier stop.
            start = conn.backfill_position or conn.sync_from or window_start
            for first, last in _chunks(start, window_end, options.chunk_days):
                self._read(self.reader.complete(first, last))
                TrackerConnection.objects.filter(pk=conn.pk).update(
                    backfill_position=last + dt.timedelta(days=1)
                )
            self.window_read = True
            return

        since = conn.cursor - dt.timedelta(minutes=conn.overlap_minutes)
        due = conn.window_checked_at is None or (
            now - conn.window_checked_at
            >= dt.timedelta(hours=conn.window_every_hours) - WINDOW_SLACK
        )
        reach = self.reader.changes_reach
        if self.reader.lists_changes and (reach is None or now - since <= reach):
            self._read(self.reader.changed(since))  # type: ignore[attr-defined]
            start = window_start if due else None
        elif self.reader.lists_changes:
            self.warnings.append(
                f"the last successful run is older than {reach.days} days, the furthest back "
                f"the tracker lists changes: the last {conn.window_days} days were read instead"
            )
            start, due = window_start, True
        else:
            # The report APIs list entries by date only: the days since the cursor are read
            # again in full (and with them the rolling window when it is due).
            start = _local(since, options.timezone)[0]
            if conn.sync_from:
                start = max(start, conn.sync_from)
            if due:
                start = min(start, window_start)
        if start is not None:
            for first, last in _chunks(start, window_end, options.chunk_days):
                self._read(self.reader.complete(first, last))
        self.window_read = due

    def _read(self, listing: Listing) -> None:
        seen: set[str] = set()
        for page in listing.pages:
            seen.update(entry.external_id for entry in page)
            self._store(page, label=listing.label, fetched=True)
        if listing.window is not None:
            self._notice_deletions(listing, seen)

    def _release_held(self) -> None:
        """Store the waiting entries whose user and project are now both mapped."""
        ready = list(
            HeldEntry.objects.filter(
                connection=self.conn,
                external_person__person__isnull=False,
                external_project__project__isnull=False,
            ).order_by("id")
        )
        size = self.options.page_size
        for start in range(0, len(ready), size):
            self.has_held = True
            chunk = [RemoteEntry.from_json(held.data) for held in ready[start : start + size]]
            self._store(chunk, label="entries released by new mappings", fetched=False)

    # --- writing -----------------------------------------------------------------------------

    def _plan(self, page: list[RemoteEntry]) -> _Page:
        live = [entry for entry in page if not entry.deleted]
        people = self.mappings.people(entry.user for entry in live)
        projects = self.mappings.projects(entry.project for entry in live)
        plan = _Page()
        for entry in page:
            if entry.deleted:
                plan.gone.append(entry.external_id)
                continue
            if self.conn.sync_from and entry.date < self.conn.sync_from:
                continue  # before the connection's first day: never stored
            if entry.running:
                plan.running += 1
                continue
            if not 0 <= entry.duration_seconds <= MAX_ENTRY_SECONDS:
                plan.problems.append(
                    f"entry {entry.external_id} of {entry.date}: duration "
                    f"{format_seconds(entry.duration_seconds)} is over 24 hours; correct it in "
                    "the tracker"
                )
                continue
            person = people[entry.user.external_id]
            project = projects[entry.project.external_id]
            if person.person is None or project.project is None:
                plan.held.append((entry, person, project))
                continue
            plan.incoming.append(
                IncomingEntry.of(
                    external_id=entry.external_id,
                    values=EntryValues(
                        person=person.person,
                        client=project.project.client,
                        project=project.project,
                        task=entry.task.strip()[:200],
                        date=entry.date,
                        start_time=entry.start_time,
                        duration_seconds=entry.duration_seconds,
                        notes=entry.notes,
                        tracker_billable=entry.billable,
                    ),
                    connection_id=self.conn.pk,
                    source_updated_at=entry.updated_at,
                )
            )
        return plan

    def _store(self, page: list[RemoteEntry], *, label: str, fetched: bool) -> None:
        # One entry once per page, its last version (a tracker may repeat one across a page).
        page = list({entry.external_id: entry for entry in page}.values())
        counts = dict.fromkeys(COUNTERS, 0)
        with transaction.atomic():
            plan = self._plan(page)
            entry_ids: list[int] = []
            frozen_ids: list[int] = []
            if plan.incoming:
                outcome = upsert_entries(
                    source=self.conn.kind, incoming=plan.incoming, batch_for=self._batch_for
                )
                entry_ids += outcome.created_ids + outcome.updated_ids
                frozen_ids += self._first_seen(outcome.frozen_ids)
                counts["created"] = len(outcome.created_ids)
                counts["updated"] = len(outcome.updated_ids)
                counts["frozen"] = len(frozen_ids)
                counts["unchanged"] = outcome.unchanged
                if self.batch is not None:
                    ImportBatch.objects.filter(pk=self.batch.pk).update(
                        rows=F("rows") + len(plan.incoming),
                        created=F("created") + counts["created"],
                        updated=F("updated") + counts["updated"],
                        unchanged=F("unchanged") + counts["unchanged"],
                        frozen_changes=F("frozen_changes") + counts["frozen"],
                    )
            if plan.held:
                self._hold(plan.held)
            settled = [item.external_id for item in plan.incoming] + plan.gone
            if self.has_held and settled:
                HeldEntry.objects.filter(connection=self.conn, external_id__in=settled).delete()
            if plan.gone:
                deleted, frozen = self._mark_gone(plan.gone)
                frozen = self._first_seen(frozen)
                entry_ids += deleted
                frozen_ids += frozen
                counts["deleted"] = len(deleted)
                counts["frozen"] += len(frozen)
            counts.update(
                pages=1 if fetched else 0,
                fetched=len(page) if fetched else 0,
                held=len(plan.held),
                running_skipped=plan.running,
                errors=len(plan.problems),
            )
            self.problems.extend(plan.problems)
            self._count(counts, progress=label, problems=plan.problems)
            self._announce(entry_ids, frozen_ids)

    def _first_seen(self, frozen_ids: list[int]) -> list[int]:
        new = [entry_id for entry_id in frozen_ids if entry_id not in self.frozen_seen]
        self.frozen_seen.update(new)
        return new

    def _batch_for(self, counts: UpsertCounts) -> ImportBatch | None:
        """The run's ImportBatch (what new and changed entries point to), made when first
        needed: a run that changes nothing leaves no batch behind."""
        if self.batch is None and (counts.created or counts.updated or counts.frozen):
            self.batch = ImportBatch.objects.create(
                source=self.conn.kind,
                filename=f"sync: {self.conn.name} (run {self.run.pk})"[:255],
                sha256="",
            )
            SyncRun.objects.filter(pk=self.run.pk).update(import_batch=self.batch)
        return self.batch

    def _hold(self, held: list[tuple[RemoteEntry, ExternalPerson, ExternalProject]]) -> None:
        now = timezone.now()
        HeldEntry.objects.bulk_create(
            [
                HeldEntry(
                    connection=self.conn,
                    external_id=entry.external_id,
                    external_person=person,
                    external_project=project,
                    date=entry.date,
                    data=entry.to_json(),
                    fetched_at=now,
                )
                for entry, person, project in held
            ],
            update_conflicts=True,
            unique_fields=["connection", "external_id"],
            update_fields=["external_person", "external_project", "date", "data", "fetched_at"],
        )
        self.has_held = True

    def _mark_gone(self, external_ids: Sequence[str]) -> tuple[list[int], list[int]]:
        """Entries the tracker no longer has: marked deleted, or, on an approved invoice, kept
        as billed with the deletion recorded beside them. (ids deleted, ids frozen)"""
        now = timezone.now()
        deleted: list[int] = []
        frozen: list[int] = []
        for start in range(0, len(external_ids), BATCH_SIZE):
            chunk = list(external_ids[start : start + BATCH_SIZE])
            for entry_id, locked in (
                TimeEntry.objects.select_for_update()
                .filter(source=self.conn.kind, external_id__in=chunk)
                .values_list("id", "locked")
            ):
                (frozen if locked else deleted).append(entry_id)
        for start in range(0, len(deleted), BATCH_SIZE):
            TimeEntry.objects.filter(pk__in=deleted[start : start + BATCH_SIZE]).update(
                deleted_at=now, updated_at=now
            )
        for start in range(0, len(frozen), BATCH_SIZE):
            TimeEntry.objects.filter(pk__in=frozen[start : start + BATCH_SIZE]).update(
                pending_source_change={
                    "deleted": True,
                    "noticed_at": now.isoformat(),
                    "sync_run_id": self.run.pk,
                },
                updated_at=now,
            )
        return deleted, frozen

    def _notice_deletions(self, listing: Listing, seen: set[str]) -> None:
        assert listing.window is not None
        first, last = listing.window
        stored = TimeEntry.objects.filter(connection=self.conn, date__gte=first, date__lte=last)
        waiting = HeldEntry.objects.filter(connection=self.conn, date__gte=first, date__lte=last)
        if listing.users is not None:
            stored = stored.filter(
                person__tracker_users__connection=self.conn,
                person__tracker_users__external_id__in=sorted(listing.users),
            ).distinct()
            waiting = waiting.filter(external_person__external_id__in=sorted(listing.users))
        missing = [key for key in stored.values_list("external_id", flat=True) if key not in seen]
        gone_waiting = [
            pk for pk, key in waiting.values_list("id", "external_id") if key not in seen
        ]
        if gone_waiting:
            HeldEntry.objects.filter(pk__in=gone_waiting).delete()
        if not missing:
            return
        with transaction.atomic():
            deleted, frozen = self._mark_gone(missing)
            frozen = self._first_seen(frozen)
            self._count(
                {"deleted": len(deleted), "frozen": len(frozen)},
                progress=f"{listing.label}: {len(missing)} no longer at the source",
            )
            self._announce(deleted, frozen)

    def _count(
        self, counts: dict[str, int], *, progress: str, problems: Sequence[str] = ()
    ) -> None:
        for name, value in counts.items():
            setattr(self.run, name, getattr(self.run, name) + value)
        update: dict[str, Any] = {name: F(name) + value for name, value in counts.items() if value}
        update["progress"] = f"{progress}: {self.run.pages} pages, {self.run.fetched} entries read"[
            :300
        ]
        if problems:
            update["error_messages"] = (list(self.run.error_messages) + list(problems))[
                -MAX_ERROR_MESSAGES:
            ]
            self.run.error_messages = update["error_messages"]
        SyncRun.objects.filter(pk=self.run.pk).update(**update)

    def _announce(self, entry_ids: list[int], frozen_ids: list[int]) -> None:
        """Enqueued in the page's transaction: the task exists exactly when the page does."""
        if entry_ids or frozen_ids:
            async_task(
                "timesheets.tasks.announce_synced_entries",
                entry_ids=entry_ids,
                frozen_entry_ids=frozen_ids,
                sync_run_id=self.run.pk,
                batch_id=self.batch.pk if self.batch else None,
                q_options={"group": f"sync-{self.conn.pk}"},
            )
