"""Each tracker API's entries as RemoteEntry pages: Harvest v2, Clockify (detailed report or
per user) and Toggl Track (Reports API v3 or the token owner's `/me/time_entries`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from integrations import clockify, harvest, toggl
from timesheets.importing.values import InvalidValue, hours_to_seconds, parse_time
from timesheets.models import TrackerConnection
from timesheets.sync.options import SyncOptions
from timesheets.sync.remote import Listing, Reader, RemoteEntry, RemoteProject, RemoteUser


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


def local_day_and_time(moment: dt.datetime, zone: ZoneInfo) -> tuple[dt.date, dt.time]:
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
            invoiced=e.invoiced,
            approved=e.approved,
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
        day, start_time = local_day_and_time(e.start, self.options.timezone)
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
            invoiced=e.invoiced,  # [G] where Clockify's answer carries it (integrations.clockify)
            approved=e.approved,
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
        # project id -> (project, client) names, asked for once per run (a reader lives one
        # run): Reports v3 rows carry ids only.
        self._project_names: dict[int, tuple[str, str]] | None = None

    def _names_of(self, e: toggl.TogglTimeEntry) -> tuple[str, str]:
        """The entry's project and client names: as sent (`/me/time_entries?meta=true` sends
        them), else from the workspace's projects and clients."""
        if e.project_id is None or e.project_name:
            return e.project_name, e.client_name
        if self._project_names is None:
            self._project_names = self.client.project_names(self.workspace_id)
        return self._project_names.get(e.project_id, ("", ""))

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
        day, start_time = local_day_and_time(e.start, self.options.timezone)
        project_name, client_name = self._names_of(e)
        return RemoteEntry(
            external_id=str(e.id),
            user=RemoteUser(str(e.user_id), e.user_name),
            project=RemoteProject(
                str(e.project_id) if e.project_id is not None else "",
                project_name,
                "",
                client_name,
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
            # Toggl carries no invoiced or approval state (integrations.toggl): the defaults.
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
