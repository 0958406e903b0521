"""Toggl Track: API v9 (`/me/time_entries`) and Reports API v3 (detailed search), read-only.

    client = TogglClient(api_token=...)
    entries = client.my_time_entries(since=cursor)                          # one user, 1 call
    for page in client.report_pages(workspace_id, start_date=..., end_date=...):   # workspace
        ...

Contract (shared/specs/api-notes.md section 3): HTTP Basic auth with the API token as user name
and the literal password `api_token`.

- `GET /me/time_entries` answers a bare array with no paging. With `since` (UNIX time) it lists
  entries *modified* since then, deleted ones included (`server_deleted_at` set): the cursor is
  `at`. Without it, `start_date`/`end_date` select by start.
- `POST /workspace/{ws}/search/time_entries` (Reports v3) answers an array of rows, each with its
  `time_entries`; the next page is asked for by sending the `X-Next-ID` and `X-Next-Row-Number`
  response headers back as `first_id` / `first_row_number`; no headers: last page. A row
  carries `project_id`, `user_id`, `task_id`, never the project's or client's name: those come
  from `GET /workspaces/{ws}/projects` and `/clients` (`project_names`), which the caller asks
  for once per run.
- Durations are seconds; a running entry has a negative duration and no stop.
- Rates are cents (`hourly_rate_in_cents`), read as `Decimal` / 100.
- No invoiced or approval state: neither the v9 time entry nor the Reports v3 row (api-notes
  3.2, 3.3) carries one, so entries from Toggl are never marked invoiced and their approval is
  unknown. Nothing is guessed here; if Toggl adds such a field, read it in `_v9_entry` /
  `_report_entries` and pass it on as Harvest and Clockify do.

Quotas (since Sep 2025, api-notes 3.4 [D]): workspace-scoped requests (reports, projects,
clients) 30, 240 or 600 an hour by plan (Free, Starter, Premium), user-scoped ones (`/me...`)
30 an hour on every plan, per user over a sliding hour; when used up Toggl answers **402**, and
a burst limiter of about one request a second answers 429. Requests are paced under both
before Toggl says either (`TogglPacing`: setting TOGGL_PLAN, or TOGGL_REQUESTS_PER_HOUR for
another plan's figure; TOGGL_REQUESTS_PER_SECOND), shared by the clients of one token in a
process; a request the hour's budget would hold longer than `max_wait_seconds` is not sent and
raises TogglQuotaExceeded with when to come back. Errors, each named, never carrying the token:

    TogglAuthError        401/403: token refused
    TogglQuotaExceeded    402 whose reset is further away than this client may wait, or
                          the hour's budget used up for longer than that (nothing sent)
    TogglRateLimited      429 still answered after the retries, or a Retry-After too long
    TogglUnavailable      5xx, timeouts, dropped connections, after bounded retries
    TogglResponseError    any other answer (400 "Invalid start date", text bodies) or shape

This module imports neither `timesheets` nor `invoices`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from integrations.errors import (
    IntegrationError,
    TrackerAuthError,
    TrackerRateLimited,
    TrackerResponseError,
    TrackerUnavailable,
)
from integrations.http_retries import Backoff, parse_timestamp, retry_after_seconds
from integrations.pacing import BudgetExhausted, SlidingWindowBudget

DEFAULT_BASE_URL = "https://api.track.toggl.com/api/v9"
DEFAULT_REPORTS_URL = "https://api.track.toggl.com/reports/api/v3"
# Reports v3 documents `page_size` with a default of 50 and publishes no maximum [G]; 1000 is
# the most this project asks for (the `page_size` option's ceiling), and the default: each
# page is one request of a quota of 30-600 an hour, so pages are as large as allowed.
MAX_REPORT_PAGE_SIZE = 1000
DEFAULT_REPORT_PAGE_SIZE = MAX_REPORT_PAGE_SIZE
# Header names of the remaining-quota answer are not documented [G]; Retry-After wins if sent.
QUOTA_RESET_HEADERS = ("Retry-After", "X-Toggl-Quota-Resets-In")

# Published quotas (api-notes 3.4 [D], since 5 Sep 2025), per user per organization, counted
# over a sliding 60 minutes: workspace-scoped requests by plan, user-scoped ones on every plan.
PLAN_REQUESTS_PER_HOUR = {"free": 30, "starter": 240, "premium": 600}
USER_SCOPED_REQUESTS_PER_HOUR = 30
# The burst limiter is "about 1 request/second" (a leaky bucket answering 429).
BURST_REQUESTS_PER_SECOND = 1
DEFAULT_PLAN = "free"  # the smallest quota: an unset plan never runs into 402


@dataclass(frozen=True)
class TogglQuotas:
    """Requests allowed per hour (workspace-scoped, user-scoped) and per second."""

    workspace_per_hour: int
    user_per_hour: int
    per_second: int

    @classmethod
    def of(
        cls,
        plan: str = DEFAULT_PLAN,
        *,
        requests_per_hour: int | None = None,
        requests_per_second: int | None = None,
    ) -> TogglQuotas:
        """The plan's published quotas; `requests_per_hour` replaces both hourly ones (another
        plan's figure, or a test server's), `requests_per_second` the burst limit."""
        if plan not in PLAN_REQUESTS_PER_HOUR:
            raise ValueError(
                f"unknown Toggl plan {plan!r}: one of {', '.join(PLAN_REQUESTS_PER_HOUR)}"
            )
        hourly = requests_per_hour or None
        return cls(
            workspace_per_hour=hourly or PLAN_REQUESTS_PER_HOUR[plan],
            user_per_hour=hourly or USER_SCOPED_REQUESTS_PER_HOUR,
            per_second=requests_per_second or BURST_REQUESTS_PER_SECOND,
        )

    @classmethod
    def from_settings(cls) -> TogglQuotas:
        """TOGGL_PLAN, TOGGL_REQUESTS_PER_HOUR, TOGGL_REQUESTS_PER_SECOND (docs/deployment.md);
        the published defaults outside Django."""
        from django.conf import settings

        if not settings.configured:
            return cls.of()
        return cls.of(
            str(getattr(settings, "TOGGL_PLAN", DEFAULT_PLAN) or DEFAULT_PLAN).lower(),
            requests_per_hour=getattr(settings, "TOGGL_REQUESTS_PER_HOUR", None),
            requests_per_second=getattr(settings, "TOGGL_REQUESTS_PER_SECOND", None),
        )


class TogglPacing:
    """One token's requests held under its quotas: the hour's budget of its scope, then the
    burst limit. The clock and the sleep are injectable (tests wait for nothing)."""

    def __init__(
        self,
        quotas: TogglQuotas,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.quotas = quotas

        def budget(limit: int, window_seconds: float) -> SlidingWindowBudget:
            return SlidingWindowBudget(
                limit=limit, window_seconds=window_seconds, clock=clock, sleep=sleep
            )

        self.workspace = budget(quotas.workspace_per_hour, 3600)
        self.user = budget(quotas.user_per_hour, 3600)
        self.burst = budget(quotas.per_second, 1)

    def before_request(self, *, user_scoped: bool, max_wait_seconds: float) -> None:
        """Wait until the request may go; TogglQuotaExceeded (nothing sent) when the hour's
        budget would hold it longer than `max_wait_seconds`."""
        hourly = self.user if user_scoped else self.workspace
        try:
            hourly.acquire(max_wait=max_wait_seconds)
        except BudgetExhausted as exhausted:
            scope = "user-scoped (/me)" if user_scoped else "workspace"
            raise TogglQuotaExceeded(
                f"Toggl's hourly quota of {hourly.limit} {scope} requests is used up here; "
                f"retry after {exhausted.wait_seconds:.0f} s",
                retry_after=max(1, int(exhausted.wait_seconds + 0.999)),
            ) from None
        self.burst.acquire()


_shared_lock = threading.Lock()
_shared: dict[tuple[str, str, TogglQuotas], TogglPacing] = {}


def shared_pacing(*, base_url: str, api_token: str) -> TogglPacing:
    """The pacing of this token in this process (the quota is per user), under the configured
    quotas; made on first use. Keyed by a digest, never the token."""
    quotas = TogglQuotas.from_settings()
    key = (base_url, hashlib.sha256(api_token.encode()).hexdigest(), quotas)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = TogglPacing(quotas)
        return _shared[key]


class TogglError(IntegrationError):
    """Base of everything this adapter raises (integrations.errors: one base per layer)."""


class TogglAuthError(TogglError, TrackerAuthError):
    """The token was refused (Toggl historically answers 403, sometimes 401)."""


class TogglQuotaExceeded(TogglError, TrackerRateLimited):
    """402: the hourly quota is used up, and its reset is further than this client may wait."""


class TogglRateLimited(TogglError, TrackerRateLimited):
    """429 (the burst limiter) after the retries, or a Retry-After too long to wait."""


class TogglUnavailable(TogglError, TrackerUnavailable):
    """Toggl did not answer usefully within the retries (5xx, timeouts, resets)."""


class TogglResponseError(TogglError, TrackerResponseError):
    """An answer this client does not understand."""


@dataclass(frozen=True)
class TogglUser:
    id: int
    name: str
    email: str


@dataclass(frozen=True)
class TogglProject:
    id: int
    name: str
    client_id: int | None
    active: bool


@dataclass(frozen=True)
class TogglClientRecord:
    id: int
    name: str


@dataclass(frozen=True)
class TogglTimeEntry:
    id: int
    workspace_id: int | None
    user_id: int
    user_name: str
    project_id: int | None
    project_name: str
    client_name: str
    task_id: int | None
    task_name: str
    description: str
    billable: bool
    start: dt.datetime
    stop: dt.datetime | None
    duration_seconds: int  # negative while running
    updated_at: dt.datetime | None  # `at`
    deleted_at: dt.datetime | None  # `server_deleted_at` (only through `since`)
    tags: tuple[str, ...]
    hourly_rate: Decimal | None
    currency: str

    @property
    def is_running(self) -> bool:
        return self.duration_seconds < 0 or self.stop is None


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an id: {value!r}")
    return int(value)


def _seconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"duration is not a number of seconds: {value!r}")
    return int(value)


def _cents(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"rate is not a number of cents: {value!r}")
    return Decimal(value) / 100


def _v9_entry(raw: Mapping[str, Any]) -> TogglTimeEntry:
    stop = raw.get("stop")
    at = raw.get("at")
    deleted = raw.get("server_deleted_at")
    tags = raw.get("tags") or []
    return TogglTimeEntry(
        id=int(raw["id"]),
        workspace_id=_optional_int(raw.get("workspace_id", raw.get("wid"))),
        user_id=int(raw.get("user_id", raw.get("uid"))),
        user_name=str(raw.get("user_name") or ""),
        project_id=_optional_int(raw.get("project_id", raw.get("pid"))),
        project_name=str(raw.get("project_name") or ""),
        client_name=str(raw.get("client_name") or ""),
        task_id=_optional_int(raw.get("task_id", raw.get("tid"))),
        task_name=str(raw.get("task_name") or ""),
        description=str(raw.get("description") or ""),
        billable=bool(raw.get("billable", False)),
        start=parse_timestamp(raw["start"]),
        stop=parse_timestamp(stop) if stop else None,
        duration_seconds=_seconds(raw["duration"]),
        updated_at=parse_timestamp(at) if at else None,
        deleted_at=parse_timestamp(deleted) if deleted else None,
        tags=tuple(str(tag) for tag in tags),
        hourly_rate=None,
        currency="",
    )


def _report_entries(row: Mapping[str, Any]) -> list[TogglTimeEntry]:
    entries = row.get("time_entries")
    if not isinstance(entries, list):
        raise ValueError("report row without time_entries")
    found = []
    for raw in entries:
        stop = raw.get("stop")
        at = raw.get("at")
        found.append(
            TogglTimeEntry(
                id=int(raw["id"]),
                workspace_id=None,
                user_id=int(row["user_id"]),
                user_name=str(row.get("username") or ""),
                project_id=_optional_int(row.get("project_id")),
                # The published row has ids only: names are resolved by the caller through
                # `project_names` (projects and clients endpoints), never read from the row.
                project_name="",
                client_name="",
                task_id=_optional_int(row.get("task_id")),
                task_name="",
                description=str(row.get("description") or ""),
                billable=bool(row.get("billable", False)),
                start=parse_timestamp(raw["start"]),
                stop=parse_timestamp(stop) if stop else None,
                duration_seconds=_seconds(raw["seconds"]),
                updated_at=parse_timestamp(at) if at else None,
                deleted_at=None,
                tags=(),
                hourly_rate=_cents(row.get("hourly_rate_in_cents")),
                currency=str(row.get("currency") or ""),
            )
        )
    return found


def _user(raw: Mapping[str, Any]) -> TogglUser:
    return TogglUser(
        id=int(raw.get("id", raw.get("user_id"))),
        name=str(raw.get("fullname") or raw.get("name") or ""),
        email=str(raw.get("email") or ""),
    )


def _project(raw: Mapping[str, Any]) -> TogglProject:
    return TogglProject(
        id=int(raw["id"]),
        name=str(raw.get("name") or ""),
        client_id=_optional_int(raw.get("client_id", raw.get("cid"))),
        active=bool(raw.get("active", True)),
    )


def _client(raw: Mapping[str, Any]) -> TogglClientRecord:
    return TogglClientRecord(id=int(raw["id"]), name=str(raw.get("name") or ""))


def _hint_seconds(response: requests.Response) -> int | None:
    for header in QUOTA_RESET_HEADERS:
        seconds = retry_after_seconds(response.headers.get(header))
        if seconds is not None:
            return seconds
    return None


class TogglClient(Backoff):
    def __init__(
        self,
        *,
        api_token: str,
        base_url: str = DEFAULT_BASE_URL,
        reports_url: str = DEFAULT_REPORTS_URL,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_retries: int = 4,
        backoff_seconds: float = 1,
        max_backoff_seconds: float = 30,
        max_wait_seconds: int = 120,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        pacing: TogglPacing | None = None,
    ) -> None:
        """`pacing`: by default the one of this token in this process (`shared_pacing`)."""
        self.base_url = base_url.rstrip("/")
        self.reports_url = reports_url.rstrip("/")
        self._auth = (api_token, "api_token")
        self._headers = {"Accept": "application/json"}
        self._timeout = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._session = session or requests.Session()
        self._pacing = pacing or shared_pacing(base_url=self.base_url, api_token=api_token)

    def __repr__(self) -> str:  # never the token
        return f"TogglClient({self.base_url!r}, {self.reports_url!r})"

    # --- reading -------------------------------------------------------------------------------

    def my_time_entries(
        self,
        *,
        since: dt.datetime | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> list[TogglTimeEntry]:
        """The token owner's entries: modified since `since` (deleted ones included), or
        starting in [start, end). One request, no paging."""
        params: dict[str, str] = {"meta": "true"}
        if since is not None:
            params["since"] = str(int(since.timestamp()))
        if start is not None and end is not None:
            params["start_date"] = start.isoformat(timespec="seconds")
            params["end_date"] = end.isoformat(timespec="seconds")
        body, _ = self._send("GET", f"{self.base_url}/me/time_entries", params=params)
        if not isinstance(body, list):
            raise TogglResponseError("expected a JSON array of time entries")
        return self._parse(body, lambda raw: [_v9_entry(raw)])

    def report_pages(
        self,
        workspace_id: str,
        *,
        start_date: dt.date,
        end_date: dt.date,
        page_size: int = DEFAULT_REPORT_PAGE_SIZE,
    ) -> Iterator[list[TogglTimeEntry]]:
        """Every entry of the workspace dated start_date..end_date (inclusive), one list per
        page, following X-Next-ID / X-Next-Row-Number to the end. Entries carry project ids,
        not names (see `project_names`)."""
        page_size = min(max(page_size, 1), MAX_REPORT_PAGE_SIZE)
        url = f"{self.reports_url}/workspace/{workspace_id}/search/time_entries"
        request: dict[str, Any] = {
            "start_date": start_date.isoformat(),
            "end_date": end_date.isoformat(),
            "page_size": page_size,
            "order_by": "date",
            "order_dir": "asc",
            "grouped": False,
            "enrich_response": False,
            "hide_amounts": False,
        }
        seen: set[tuple[str, str]] = set()
        while True:
            body, headers = self._send("POST", url, json=request)
            if not isinstance(body, list):
                raise TogglResponseError("expected a JSON array of report rows")
            yield self._parse(body, _report_entries)
            next_id = headers.get("X-Next-ID")
            next_row = headers.get("X-Next-Row-Number")
            if not next_id or not next_row:
                return
            if (next_id, next_row) in seen:
                raise TogglResponseError("X-Next-ID repeats an earlier page")
            seen.add((next_id, next_row))
            try:
                request = {**request, "first_id": int(next_id), "first_row_number": int(next_row)}
            except ValueError as exc:
                raise TogglResponseError(f"unreadable paging headers: {next_id!r}") from exc
            next_timestamp = headers.get("X-Next-Timestamp")
            if next_timestamp and next_timestamp.isdigit():
                request["first_timestamp"] = int(next_timestamp)

    def me(self) -> TogglUser:
        """The token's owner (`GET /me`): the cheapest authenticated request."""
        body, _ = self._send("GET", f"{self.base_url}/me")
        if not isinstance(body, Mapping):
            raise TogglResponseError("expected a JSON object for /me")
        return self._parse([body], lambda raw: [_user(raw)])[0]

    def projects(self, workspace_id: str) -> list[TogglProject]:
        """The workspace's projects, archived ones included (`active=both` [G]: an old entry
        may be on an archived project)."""
        body, _ = self._send(
            "GET", f"{self.base_url}/workspaces/{workspace_id}/projects", params={"active": "both"}
        )
        if not isinstance(body, list):
            raise TogglResponseError("expected a JSON array of projects")
        return self._parse(body, lambda raw: [_project(raw)])

    def clients(self, workspace_id: str) -> list[TogglClientRecord]:
        """The workspace's clients (`status=both` [G]: archived ones too)."""
        body, _ = self._send(
            "GET", f"{self.base_url}/workspaces/{workspace_id}/clients", params={"status": "both"}
        )
        if not isinstance(body, list):
            raise TogglResponseError("expected a JSON array of clients")
        return self._parse(body, lambda raw: [_client(raw)])

    def project_names(self, workspace_id: str) -> dict[int, tuple[str, str]]:
        """project id -> (project name, client name or ""), from two requests: what Reports
        v3 rows need, since they carry ids only. Callers keep it for the run."""
        clients = {c.id: c.name for c in self.clients(workspace_id)}
        return {
            p.id: (p.name, clients.get(p.client_id, "") if p.client_id is not None else "")
            for p in self.projects(workspace_id)
        }

    def workspace_users(self, workspace_id: str) -> list[TogglUser]:
        """The workspace's users with their emails [G: endpoint and fields from third-party
        clients, not the v9 docs]."""
        body, _ = self._send("GET", f"{self.base_url}/workspaces/{workspace_id}/users")
        if not isinstance(body, list):
            raise TogglResponseError("expected a JSON array of users")
        return self._parse(body, lambda raw: [_user(raw)])

    # --- plumbing ------------------------------------------------------------------------------

    @staticmethod
    def _parse(items: list[Any], parse: Callable[[Mapping[str, Any]], list[Any]]) -> list[Any]:
        try:
            return [parsed for item in items for parsed in parse(item)]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise TogglResponseError(f"unexpected item: {exc!r}") from exc

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> tuple[Any, requests.structures.CaseInsensitiveDict[str]]:
        last_problem = ""
        limited: tuple[type[TogglQuotaExceeded | TogglRateLimited], int] | None = None
        # `/me...` counts against the user-scoped quota; the rest (workspaces, reports) against
        # the plan's.
        user_scoped = url.startswith(f"{self.base_url}/me")
        for attempt in range(self._max_retries + 1):
            limited = None
            # Every attempt is a request of the quota, a retry too.
            self._pacing.before_request(user_scoped=user_scoped, max_wait_seconds=self._max_wait)
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    auth=self._auth,
                    headers=self._headers,
                    timeout=self._timeout,
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                last_problem = f"{type(exc).__name__}"
                self._backoff_sleep(attempt)
                continue
            status = response.status_code
            if status == 200:
                try:
                    return response.json(parse_float=Decimal), response.headers
                except ValueError as exc:
                    raise TogglResponseError("the answer is not JSON") from exc
            if status in (401, 403):
                raise TogglAuthError(f"Toggl refused the token: {_why(response)}")
            if status in (402, 429):
                kind = TogglQuotaExceeded if status == 402 else TogglRateLimited
                hinted = _hint_seconds(response)
                if status == 402 and hinted is None:
                    # A used-up hourly quota without a hint: the sliding window frees a request
                    # within the hour at the latest.
                    hinted = 3600
                wait = hinted if hinted is not None else self._backoff_delay(attempt)
                what = "quota used up" if status == 402 else "rate limit"
                if wait > self._max_wait:
                    raise kind(f"Toggl {what}: retry after {wait} s", retry_after=int(wait))
                last_problem = f"HTTP {status} ({what})"
                limited = (kind, int(wait) or 1)
                if attempt < self._max_retries:
                    self._sleep(wait)
                continue
            if status >= 500:
                last_problem = f"HTTP {status}"
                self._backoff_sleep(attempt)
                continue
            raise TogglResponseError(f"Toggl answered {_why(response)}")
        if limited is not None:
            kind, wait_seconds = limited
            raise kind(
                f"Toggl still limited after {self._max_retries + 1} attempts",
                retry_after=wait_seconds,
            )
        raise TogglUnavailable(
            f"Toggl did not answer after {self._max_retries + 1} attempts ({last_problem})"
        )


def _why(response: requests.Response) -> str:
    """Toggl's errors are mostly plain text (or a JSON-encoded string)."""
    text = response.text.strip()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, str):
        text = body
    elif isinstance(body, Mapping) and body.get("message"):
        text = str(body["message"])
    return f"HTTP {response.status_code} {text[:200]!r}" if text else f"HTTP {response.status_code}"
