"""Harvest API v2: the time entries and users of one account, read-only.

    client = HarvestClient(token=..., account_id="123", user_agent="billables (ops@firm.example)")
    for page in client.time_entry_pages(updated_since=cursor):
        ...

Contract (shared/specs/api-notes.md section 1): every request carries `Authorization: Bearer`,
`Harvest-Account-Id` and a `User-Agent` naming the app and a contact (400 without it). Lists are
followed through `links.next` verbatim until it is null: Harvest hands out opaque cursor links,
so page URLs are never built here. JSON numbers are read as `Decimal` (hours 2.11 stays 2.11).

Errors, each named, never carrying the token:

    HarvestAuthError         401: token (or account id) refused; retrying cannot help
    HarvestPermissionDenied  403: the token's user may not see this (e.g. /users as a member)
    HarvestRateLimited       429 whose Retry-After is longer than this client may wait
    HarvestUnavailable       5xx, timeouts, dropped connections, after bounded retries
    HarvestResponseError     any other answer, or a body that is not the documented shape

Requests are paced under Harvest's published limit, 100 requests per 15 s (api-notes 1.5 [D]),
by a sliding-window budget shared by the clients of one account in this process, so a long
sync waits before Harvest says 429 rather than after. A 429 that still comes (another process,
another app on the same account) is waited out when Retry-After is short; 5xx and network
errors are retried with exponential backoff.

This module imports neither `timesheets` nor `invoices`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from integrations.errors import (
    IntegrationError,
    TrackerAuthError,
    TrackerPermissionDenied,
    TrackerRateLimited,
    TrackerResponseError,
    TrackerUnavailable,
)
from integrations.http_retries import Backoff, parse_timestamp, retry_after_seconds
from integrations.pacing import Budgets, SlidingWindowBudget

DEFAULT_BASE_URL = "https://api.harvestapp.com/v2"
MAX_PER_PAGE = 2000
# The general API's published limit (the Reports API's is 100 per 15 minutes; not used here).
REQUESTS_PER_WINDOW = 100
WINDOW_SECONDS = 15
account_budget = Budgets(
    lambda: SlidingWindowBudget(limit=REQUESTS_PER_WINDOW, window_seconds=WINDOW_SECONDS)
)


class HarvestError(IntegrationError):
    """Base of everything this adapter raises (integrations.errors: one base per layer)."""


class HarvestAuthError(HarvestError, TrackerAuthError):
    """The token or the account id was refused (401)."""


class HarvestPermissionDenied(HarvestError, TrackerPermissionDenied):
    """The token is valid but its user may not read this (403)."""


class HarvestRateLimited(HarvestError, TrackerRateLimited):
    """429 with a Retry-After longer than this client may wait, or still 429 after retries."""


class HarvestUnavailable(HarvestError, TrackerUnavailable):
    """Harvest did not answer usefully within the retries (5xx, timeouts, resets)."""


class HarvestResponseError(HarvestError, TrackerResponseError):
    """An answer this client does not understand (422, an unexpected body...)."""


@dataclass(frozen=True)
class HarvestUser:
    id: int
    first_name: str
    last_name: str
    email: str
    is_active: bool

    @property
    def name(self) -> str:
        return " ".join(f"{self.first_name} {self.last_name}".split())


@dataclass(frozen=True)
class HarvestTimeEntry:
    id: int
    spent_date: dt.date
    user_id: int
    user_name: str
    client_id: int | None
    client_name: str
    project_id: int | None
    project_name: str
    project_code: str
    task_id: int | None
    task_name: str
    hours: Decimal
    rounded_hours: Decimal | None
    notes: str
    billable: bool
    is_running: bool
    is_locked: bool
    started_time: str | None  # "3:00pm", only when the account tracks start and end times
    billable_rate: Decimal | None
    created_at: dt.datetime
    updated_at: dt.datetime
    # Harvest's own billing state (api-notes 1.3): billed on a Harvest invoice, approved through
    # Timesheet Approval ("closed"), and why the entry is locked.
    is_billed: bool = False
    is_closed: bool = False
    locked_reason: str = ""
    invoice_id: int | None = None

    @property
    def invoiced(self) -> bool:
        """On a Harvest invoice: `is_billed`, an `invoice`, or locked with a reason naming one
        ("Item Invoiced and Approved and Locked for this Time Period")."""
        locked_by_invoice = self.is_locked and "invoiced" in self.locked_reason.casefold()
        return self.is_billed or self.invoice_id is not None or locked_by_invoice

    @property
    def approved(self) -> bool:
        """Approved in Harvest: `is_closed` (the docs: "approved via Timesheet Approval"), or
        locked with a reason naming an approval. Harvest always says, so never None."""
        locked_by_approval = self.is_locked and "approved" in self.locked_reason.casefold()
        return self.is_closed or locked_by_approval


def format_timestamp(value: dt.datetime) -> str:
    """`updated_since` as Harvest documents it: 2025-01-31T10:00:00Z."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise ValueError(f"not a number: {value!r}")
    return Decimal(value)


def _named(obj: Any) -> Mapping[str, Any]:
    return obj if isinstance(obj, Mapping) else {}


def _entry(raw: Mapping[str, Any]) -> HarvestTimeEntry:
    user, client, project, task = (
        _named(raw.get(key)) for key in ("user", "client", "project", "task")
    )
    hours = _decimal(raw["hours"])
    if hours is None:
        raise ValueError("hours is null")
    invoice = _named(raw.get("invoice"))
    return HarvestTimeEntry(
        id=int(raw["id"]),
        spent_date=dt.date.fromisoformat(raw["spent_date"]),
        user_id=int(user["id"]),
        user_name=str(user.get("name") or ""),
        client_id=int(client["id"]) if client.get("id") is not None else None,
        client_name=str(client.get("name") or ""),
        project_id=int(project["id"]) if project.get("id") is not None else None,
        project_name=str(project.get("name") or ""),
        project_code=str(project.get("code") or ""),
        task_id=int(task["id"]) if task.get("id") is not None else None,
        task_name=str(task.get("name") or ""),
        hours=hours,
        rounded_hours=_decimal(raw.get("rounded_hours")),
        notes=str(raw.get("notes") or ""),
        billable=bool(raw.get("billable", True)),
        is_running=bool(raw.get("is_running", False)),
        is_locked=bool(raw.get("is_locked", False)),
        started_time=raw.get("started_time") or None,
        billable_rate=_decimal(raw.get("billable_rate")),
        created_at=parse_timestamp(raw["created_at"]),
        updated_at=parse_timestamp(raw["updated_at"]),
        is_billed=bool(raw.get("is_billed", False)),
        is_closed=bool(raw.get("is_closed", False)),
        locked_reason=str(raw.get("locked_reason") or ""),
        invoice_id=int(invoice["id"]) if invoice.get("id") is not None else None,
    )


def _user(raw: Mapping[str, Any]) -> HarvestUser:
    return HarvestUser(
        id=int(raw["id"]),
        first_name=str(raw.get("first_name") or ""),
        last_name=str(raw.get("last_name") or ""),
        email=str(raw.get("email") or ""),
        is_active=bool(raw.get("is_active", True)),
    )


class HarvestClient(Backoff):
    def __init__(
        self,
        *,
        token: str,
        account_id: str,
        user_agent: str,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_retries: int = 4,
        backoff_seconds: float = 1,
        max_backoff_seconds: float = 30,
        max_wait_seconds: int = 120,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        budget: SlidingWindowBudget | None = None,
    ) -> None:
        """`budget`: the request pacing; by default the one of this account in this process."""
        if not user_agent.strip():
            raise ValueError("Harvest requires a User-Agent naming the app and a contact")
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Harvest-Account-Id": str(account_id),
            "User-Agent": user_agent,
            "Accept": "application/json",
        }
        self._timeout = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._session = session or requests.Session()
        self._budget = budget or account_budget(f"{self.base_url} {account_id}")

    def __repr__(self) -> str:  # never the token
        return f"HarvestClient({self.base_url!r})"

    # --- reading -------------------------------------------------------------------------------

    def time_entry_pages(
        self,
        *,
        updated_since: dt.datetime | None = None,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[list[HarvestTimeEntry]]:
        """Every time entry matching the filters, one list per page, to the last page.
        `from_date`/`to_date` filter on spent_date (inclusive); `updated_since` on updated_at."""
        params: dict[str, str] = {"per_page": str(min(max(per_page, 1), MAX_PER_PAGE))}
        if updated_since is not None:
            params["updated_since"] = format_timestamp(updated_since)
        if from_date is not None:
            params["from"] = from_date.isoformat()
        if to_date is not None:
            params["to"] = to_date.isoformat()
        for body in self._pages("time_entries", params):
            yield self._parse(body, "time_entries", _entry)

    def users(self) -> list[HarvestUser]:
        """Every user of the account (needs an administrator's or manager's token)."""
        found: list[HarvestUser] = []
        for body in self._pages("users", {"per_page": str(MAX_PER_PAGE)}):
            found.extend(self._parse(body, "users", _user))
        return found

    def current_user(self) -> HarvestUser:
        """The token's user (`GET /users/me`): the cheapest authenticated request, used to check
        a connection before go-live."""
        body = self._get(f"{self.base_url}/users/me", None)
        try:
            return _user(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise HarvestResponseError(f"unexpected /users/me answer: {exc!r}") from exc

    # --- plumbing ------------------------------------------------------------------------------

    def _pages(self, resource: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        url: str | None = f"{self.base_url}/{resource}"
        query: dict[str, str] | None = params
        seen: set[str] = set()
        while url is not None:
            body = self._get(url, query)
            links = _named(body.get("links"))
            next_url = links.get("next")
            if next_url is not None and not isinstance(next_url, str):
                raise HarvestResponseError(f"links.next is not a URL: {next_url!r}")
            if next_url in seen:
                raise HarvestResponseError(f"links.next repeats an earlier page: {next_url}")
            if next_url:
                seen.add(next_url)
            yield body
            # The next link carries every filter (and the cursor) itself: follow it verbatim.
            url, query = next_url or None, None

    @staticmethod
    def _parse(
        body: dict[str, Any], key: str, parse: Callable[[Mapping[str, Any]], Any]
    ) -> list[Any]:
        items = body.get(key)
        if not isinstance(items, list):
            raise HarvestResponseError(f"the answer has no {key!r} list")
        try:
            return [parse(item) for item in items]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise HarvestResponseError(f"unexpected {key} item: {exc!r}") from exc

    def _get(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        last_problem = ""
        rate_limited_for: int | None = None
        for attempt in range(self._max_retries + 1):
            rate_limited_for = None
            self._budget.acquire()
            try:
                response = self._session.get(
                    url, params=params, headers=self._headers, timeout=self._timeout
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                last_problem = f"{type(exc).__name__} from {self.base_url}"
                self._backoff_sleep(attempt)
                continue
            status = response.status_code
            if status == 200:
                try:
                    body = response.json(parse_float=Decimal)
                except ValueError as exc:
                    raise HarvestResponseError("the answer is not JSON") from exc
                if not isinstance(body, dict):
                    raise HarvestResponseError("the answer is not a JSON object")
                return body
            if status == 401:
                raise HarvestAuthError(f"Harvest refused the token or account id: {_why(response)}")
            if status == 403:
                raise HarvestPermissionDenied(f"Harvest refused access: {_why(response)}")
            if status == 429:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is None:
                    wait = self._backoff_delay(attempt)
                if wait > self._max_wait:
                    raise HarvestRateLimited(
                        f"Harvest rate limit: retry after {wait} s", retry_after=int(wait)
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
            raise HarvestResponseError(f"HTTP {status} from Harvest: {_why(response)}")
        if rate_limited_for is not None:
            raise HarvestRateLimited(
                f"Harvest still rate limited after {self._max_retries + 1} attempts",
                retry_after=rate_limited_for,
            )
        raise HarvestUnavailable(
            f"Harvest did not answer after {self._max_retries + 1} attempts ({last_problem})"
        )


def _why(response: requests.Response) -> str:
    """A short, safe description of an error answer (Harvest's own words when it has some)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {response.text[:200]!r}"
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "error_description", "message") if body.get(k)]
        if parts:
            return f"HTTP {response.status_code} " + ": ".join(parts)
    return f"HTTP {response.status_code}"
