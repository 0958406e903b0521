"""Clockify: the time entries and users of one workspace, read-only.

    client = ClockifyClient(api_key=..., workspace_id="5c0f...")
    for page in client.report_pages(start=..., end=...):          # workspace-wide (Reports API)
        ...
    for page in client.user_time_entry_pages(user_id, start=..., end=...):   # one user
        ...

Contract (shared/specs/api-notes.md section 2): the `X-Api-Key` header; the core API and the
Reports API live on different hosts, both configurable (regional and subdomain workspaces).

- Reports API, detailed report: `POST {reports}/workspaces/{ws}/reports/detailed`, paged by
  `detailedFilter.page` / `pageSize` in the body; the list is `timeentries` (the OpenAPI spells
  it `timeEntries`), ids are `_id`, and `timeInterval.duration` is integer seconds.
- Core API, `GET /workspaces/{ws}/user/{user}/time-entries` and `GET /workspaces/{ws}/users`:
  bare JSON arrays paged by `page` / `page-size`, with no total; the last page is the first one
  shorter than the page size. Durations are ISO 8601 (`PT1H30M`).
- Rates are integers in minor units (10500 = 105.00): read as `Decimal` / 100.
- A running entry has no end and no duration.
- The tracker's billing state [G]: neither the core time entry (`TimeEntryWithRatesDtoV1`) nor
  the detailed report's published rows name an invoiced field, though Clockify marks entries
  invoiced (its CSV export has `Invoiced`, and `PATCH .../time-entries/invoiced` sets it). An
  `invoiced` (or `isInvoiced`) boolean is read where an answer carries one; otherwise an entry
  is not invoiced. Approval: `approvalStatus` (APPROVED / PENDING / REJECTED / UNSUBMITTED) is
  read where carried [G]; `approvalRequestId` alone is not read as approval, because an entry
  belongs to its approval request before the request is approved. Without either, approval is
  unknown (None).

Errors, each named, never carrying the key:

    ClockifyAuthError        401 (code 1000) or 403: key refused, or the plan/permission lacks it
    ClockifyRateLimited      429 still answered after the retries, or a Retry-After too long
    ClockifyUnavailable      5xx, timeouts, dropped connections, after bounded retries
    ClockifyResponseError    any other answer, or a body that is not the documented shape

Clockify documents no Retry-After on 429 (paid plans: 50 requests/s; new free workspaces: 30 per
hour), so 429 backs off exponentially unless a Retry-After header is present.

This module imports neither `timesheets` nor `invoices`.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
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

DEFAULT_BASE_URL = "https://api.clockify.me/api/v1"
DEFAULT_REPORTS_URL = "https://reports.api.clockify.me/v1"
MAX_REPORT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000

_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class ClockifyError(IntegrationError):
    """Base of everything this adapter raises (integrations.errors: one base per layer)."""


class ClockifyAuthError(ClockifyError, TrackerAuthError):
    """The key was refused (401), or it may not read this (403)."""


class ClockifyRateLimited(ClockifyError, TrackerRateLimited):
    """429 after the retries, or a Retry-After longer than this client may wait."""


class ClockifyUnavailable(ClockifyError, TrackerUnavailable):
    """Clockify did not answer usefully within the retries (5xx, timeouts, resets)."""


class ClockifyResponseError(ClockifyError, TrackerResponseError):
    """An answer this client does not understand."""


@dataclass(frozen=True)
class ClockifyUser:
    id: str
    name: str
    email: str
    status: str


@dataclass(frozen=True)
class ClockifyTimeEntry:
    id: str
    user_id: str
    user_name: str
    user_email: str
    project_id: str  # "" for an entry without a project
    project_name: str
    client_name: str
    task_name: str
    description: str
    billable: bool
    start: dt.datetime
    end: dt.datetime | None
    duration_seconds: int | None  # None while running
    hourly_rate: Decimal | None  # currency units, from cents
    currency: str
    invoiced: bool = False  # [G] see the module notes
    approved: bool | None = None  # [G] None: the answer does not say
    type: str = "REGULAR"  # REGULAR | BREAK | HOLIDAY | TIME_OFF (api-notes 2.2)

    @property
    def is_running(self) -> bool:
        return self.end is None or self.duration_seconds is None


_APPROVAL_STATUSES = {"APPROVED": True, "PENDING": False, "REJECTED": False, "UNSUBMITTED": False}


def _billing_state(raw: Mapping[str, Any]) -> dict[str, Any]:
    """invoiced / approved / type of one entry, from the fields named in the module notes."""
    invoiced = raw.get("invoiced", raw.get("isInvoiced"))
    status = raw.get("approvalStatus")
    return {
        "invoiced": invoiced is True,
        "approved": _APPROVAL_STATUSES.get(str(status).upper()) if status else None,
        "type": str(raw.get("type") or "REGULAR").upper(),
    }


def format_timestamp(value: dt.datetime, *, millis: bool = False) -> str:
    """UTC with the trailing Z Clockify asks for (`...T09:00:00Z` or `...T09:00:00.000Z`)."""
    utc = value.astimezone(dt.UTC)
    if millis:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration_seconds(text: str) -> int:
    """`PT1H30M` -> 5400; fractions of a second round half up."""
    match = _ISO_DURATION.match(text)
    if not match or text in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {name: Decimal(value) for name, value in match.groupdict().items() if value}
    total = (
        parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )
    return int(Decimal(total).to_integral_value(rounding=ROUND_HALF_UP))


def _cents(rate: Any) -> tuple[Decimal | None, str]:
    if not isinstance(rate, Mapping) or rate.get("amount") is None:
        return None, ""
    amount = rate["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        raise ValueError(f"rate amount is not a number of cents: {amount!r}")
    return Decimal(amount) / 100, str(rate.get("currency") or "")


def _interval(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    interval = raw.get("timeInterval")
    if not isinstance(interval, Mapping):
        raise ValueError("no timeInterval")
    return interval


def _report_entry(raw: Mapping[str, Any]) -> ClockifyTimeEntry:
    interval = _interval(raw)
    end = interval.get("end")
    duration = interval.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        # The Reports API sends integer seconds; tolerate the core API's ISO form too.
        duration = iso_duration_seconds(str(duration))
    rate, currency = _cents(raw.get("hourlyRate"))
    if rate is None and raw.get("rate") is not None:
        rate, currency = _cents({"amount": raw["rate"], "currency": raw.get("currency")})
    entry_id = raw.get("_id", raw.get("id"))
    if not entry_id:
        raise ValueError("entry without _id")
    return ClockifyTimeEntry(
        id=str(entry_id),
        user_id=str(raw["userId"]),
        user_name=str(raw.get("userName") or ""),
        user_email=str(raw.get("userEmail") or ""),
        project_id=str(raw.get("projectId") or ""),
        project_name=str(raw.get("projectName") or ""),
        client_name=str(raw.get("clientName") or ""),
        task_name=str(raw.get("taskName") or ""),
        description=str(raw.get("description") or ""),
        billable=bool(raw.get("billable", True)),
        start=parse_timestamp(interval["start"]),
        end=parse_timestamp(end) if end else None,
        duration_seconds=duration if end else None,
        hourly_rate=rate,
        currency=currency,
        **_billing_state(raw),
    )


def _core_entry(raw: Mapping[str, Any], user: ClockifyUser | None) -> ClockifyTimeEntry:
    interval = _interval(raw)
    end = interval.get("end")
    duration = interval.get("duration")
    # With hydrated=true the project and task come embedded [G on their exact shape].
    project = raw.get("project") if isinstance(raw.get("project"), Mapping) else {}
    task = raw.get("task") if isinstance(raw.get("task"), Mapping) else {}
    rate, currency = _cents(raw.get("hourlyRate"))
    return ClockifyTimeEntry(
        id=str(raw["id"]),
        user_id=str(raw["userId"]),
        user_name=user.name if user else "",
        user_email=user.email if user else "",
        project_id=str(raw.get("projectId") or project.get("id") or ""),
        project_name=str(project.get("name") or ""),
        client_name=str(project.get("clientName") or ""),
        task_name=str(task.get("name") or ""),
        description=str(raw.get("description") or ""),
        billable=bool(raw.get("billable", True)),
        start=parse_timestamp(interval["start"]),
        end=parse_timestamp(end) if end else None,
        duration_seconds=iso_duration_seconds(duration) if end and duration else None,
        hourly_rate=rate,
        currency=currency,
        **_billing_state(raw),
    )


def _user(raw: Mapping[str, Any]) -> ClockifyUser:
    return ClockifyUser(
        id=str(raw["id"]),
        name=str(raw.get("name") or ""),
        email=str(raw.get("email") or ""),
        status=str(raw.get("status") or ""),
    )


class ClockifyClient(Backoff):
    def __init__(
        self,
        *,
        api_key: str,
        workspace_id: str,
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.reports_url = reports_url.rstrip("/")
        self.workspace_id = workspace_id
        self._headers = {"X-Api-Key": api_key, "Accept": "application/json"}
        self._timeout = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._session = session or requests.Session()

    def __repr__(self) -> str:  # never the key
        return f"ClockifyClient({self.base_url!r}, {self.reports_url!r})"

    # --- reading -------------------------------------------------------------------------------

    def report_pages(
        self, *, start: dt.datetime, end: dt.datetime, page_size: int = MAX_REPORT_PAGE_SIZE
    ) -> Iterator[list[ClockifyTimeEntry]]:
        """Every entry of the workspace starting in [start, end], through the detailed report,
        one list per page, to the first page shorter than `page_size`."""
        page_size = min(max(page_size, 1), MAX_REPORT_PAGE_SIZE)
        url = f"{self.reports_url}/workspaces/{self.workspace_id}/reports/detailed"
        page = 1
        while True:
            body = self._send(
                "POST",
                url,
                json={
                    "dateRangeStart": format_timestamp(start, millis=True),
                    "dateRangeEnd": format_timestamp(end, millis=True),
                    "detailedFilter": {
                        "page": page,
                        "pageSize": page_size,
                        "sortColumn": "DATE",
                        "options": {"totals": "EXCLUDE"},
                    },
                    "sortOrder": "ASCENDING",
                    "exportType": "JSON",
                    "amountShown": "HIDE_AMOUNT",
                },
            )
            if not isinstance(body, Mapping):
                raise ClockifyResponseError("the detailed report is not a JSON object")
            items = body.get("timeentries", body.get("timeEntries"))
            if not isinstance(items, list):
                raise ClockifyResponseError("the detailed report has no timeentries list")
            yield self._parse(items, _report_entry)
            if len(items) < page_size:
                return
            page += 1

    def user_time_entry_pages(
        self,
        user: ClockifyUser,
        *,
        start: dt.datetime,
        end: dt.datetime,
        page_size: int = MAX_REPORT_PAGE_SIZE,
    ) -> Iterator[list[ClockifyTimeEntry]]:
        """Every entry of one user starting in [start, end], one list per page."""
        url = f"{self.base_url}/workspaces/{self.workspace_id}/user/{user.id}/time-entries"
        params = {
            "start": format_timestamp(start),
            "end": format_timestamp(end),
            "hydrated": "true",
        }
        for items in self._bare_pages(url, params, page_size):
            yield self._parse(items, lambda raw: _core_entry(raw, user))

    def users(self, *, page_size: int = 500) -> list[ClockifyUser]:
        url = f"{self.base_url}/workspaces/{self.workspace_id}/users"
        found: list[ClockifyUser] = []
        for items in self._bare_pages(url, {}, page_size):
            found.extend(self._parse(items, _user))
        return found

    def current_user(self) -> ClockifyUser:
        """The key's user (`GET /user`): the cheapest authenticated request, used to check a
        connection before go-live."""
        body = self._send("GET", f"{self.base_url}/user")
        if not isinstance(body, Mapping):
            raise ClockifyResponseError("expected a JSON object for /user")
        return self._parse([body], _user)[0]

    # --- plumbing ------------------------------------------------------------------------------

    def _bare_pages(
        self, url: str, params: dict[str, str], page_size: int
    ) -> Iterator[list[Mapping[str, Any]]]:
        page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
        page = 1
        while True:
            body = self._send(
                "GET", url, params={**params, "page": str(page), "page-size": str(page_size)}
            )
            if not isinstance(body, list):
                raise ClockifyResponseError("expected a JSON array")
            yield body
            if len(body) < page_size:
                return
            page += 1

    @staticmethod
    def _parse(items: list[Any], parse: Callable[[Mapping[str, Any]], Any]) -> list[Any]:
        try:
            return [parse(item) for item in items]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise ClockifyResponseError(f"unexpected time entry: {exc!r}") from exc

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        last_problem = ""
        rate_limited_for: int | None = None
        for attempt in range(self._max_retries + 1):
            rate_limited_for = None
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json,
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
                    return response.json(parse_float=Decimal)
                except ValueError as exc:
                    raise ClockifyResponseError("the answer is not JSON") from exc
            if status in (401, 403):
                raise ClockifyAuthError(f"Clockify refused the request: {_why(response)}")
            if status == 429:
                hinted = retry_after_seconds(response.headers.get("Retry-After"))
                wait = hinted if hinted is not None else self._backoff_delay(attempt)
                if wait > self._max_wait:
                    raise ClockifyRateLimited(
                        f"Clockify rate limit: retry after {wait} s", retry_after=int(wait)
                    )
                last_problem = "429 Too Many Requests"
                rate_limited_for = int(wait) or 1
                if attempt < self._max_retries:
                    self._sleep(wait)
                continue
            if status >= 500:
                last_problem = f"HTTP {status}"
                self._backoff_sleep(attempt)
                continue
            raise ClockifyResponseError(f"Clockify answered {_why(response)}")
        if rate_limited_for is not None:
            raise ClockifyRateLimited(
                f"Clockify still rate limited after {self._max_retries + 1} attempts "
                "(a free workspace allows 30 requests per hour)",
                retry_after=rate_limited_for,
            )
        raise ClockifyUnavailable(
            f"Clockify did not answer after {self._max_retries + 1} attempts ({last_problem})"
        )


def _why(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {response.text[:200]!r}"
    if isinstance(body, Mapping) and body.get("message"):
        code = f" (code {body['code']})" if body.get("code") is not None else ""
        return f"HTTP {response.status_code}: {body['message']}{code}"
    return f"HTTP {response.status_code}"
