"""A local fake of the Harvest API v2 (time entries and users) over real HTTP.

Follows shared/specs/api-notes.md section 1: `Authorization: Bearer` + `Harvest-Account-Id`
(either wrong: 401 `invalid_token` body), a missing `User-Agent` is a 400, `per_page` 1..2000
(more: 422), `updated_since` / `from` / `to` filters, entries sorted by spent_date, opaque cursor
links (absolute URLs to this fake, carrying every filter) in `links.next` until the last page, or
classic `page=N` links when `pagination = "page"`, and 429 with `Retry-After`.

Switches for faults:
    fake.fail_next(2, status=503)                  # the next two requests answer 503
    fake.fail_next(1, status=429, retry_after=1)   # a rate limit with its hint
    fake.fail_next(1, delay=3)                     # a slow answer (for client timeouts)
    fake.rate_limit = (100, 15)                    # Harvest's own limit, enforced
    fake.token = "other"                           # every request now has a bad token
    fake.edit_entry(id, notes="...")               # edited between runs (updated_at moves)
    fake.edit_entry(id, is_billed=True)            #   (billing state too: is_closed, ...)
    fake.delete_entry(id)                          # deleted between runs
    held = fake.hold_page(3)                       # the 3rd time-entries page waits for
    held.reached.wait(); ...; held.release.set()   #   the test (kill / concurrency tests)

Entries, users and the list envelope are built from Harvest's published examples in
tests/fixtures/harvest (see its README): a copy of the example object, filled with the fake's
values, so the fake has the example's keys. `GET /v2/users/me` answers the token's user.

In tests: the `harvest_server` fixture. By hand:
    python -m tests.fakes.harvest_server --port 8101 --entries 5000
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fakes import published, serving

MAX_PER_PAGE = 2000
DEFAULT_UPDATED_AT = "2026-01-05T12:00:00Z"
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed or invalid "
    "for other reasons.",
}


def utc_now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    status: int | None = None  # None: answer normally (after the delay)
    delay: float = 0
    retry_after: int | None = None
    path: str = ""  # only requests whose path contains this


@dataclass
class Hold:
    page: int
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


class FakeHarvest:
    def __init__(self, *, token: str = "harvest-token", account_id: str = "4242") -> None:
        self.token = token
        self.account_id = account_id
        self.url = ""  # set when served: http://127.0.0.1:PORT/v2
        self.pagination = "cursor"
        self.rate_limit: tuple[int, float] | None = None
        self.entries: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self.answers: list[tuple[str, int, float]] = []  # (path, status, arrival)
        self.faults: deque[Fault] = deque()
        self.holds: list[Hold] = []
        self.entry_pages_served = 0
        # Time spent answering (building bodies, delays, holds): what a benchmark subtracts.
        self.busy_seconds = 0.0
        self._lock = threading.Lock()
        self._ids = itertools.count(636709355)
        self._recent: deque[float] = deque()

    # --- data ------------------------------------------------------------------------------

    def add_user(self, user_id: int, first: str, last: str, email: str) -> dict[str, Any]:
        user = published.load("harvest", "users_list.json")["users"][0]
        user.update(
            id=user_id,
            first_name=first,
            last_name=last,
            email=email,
            is_active=True,
            created_at=DEFAULT_UPDATED_AT,
            updated_at=DEFAULT_UPDATED_AT,
        )
        self.users[user_id] = user
        return user

    def add_project(
        self, project_id: int, name: str, code: str, client_id: int, client_name: str
    ) -> dict[str, Any]:
        project = {
            "id": project_id,
            "name": name,
            "code": code,
            "client": {"id": client_id, "name": client_name, "currency": "USD"},
        }
        self.projects[project_id] = project
        return project

    def add_entry(
        self,
        *,
        user_id: int,
        project_id: int,
        spent_date: dt.date | str,
        hours: str | Decimal,
        notes: str | None = "",
        task: str = "Dev",
        billable: bool = True,
        is_running: bool = False,
        started_time: str | None = None,
        rounded_hours: str | Decimal | None = None,
        updated_at: str = DEFAULT_UPDATED_AT,
        entry_id: int | None = None,
        is_billed: bool = False,
        is_closed: bool = False,
        is_locked: bool = False,
        locked_reason: str | None = None,
        invoice: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One entry; `is_billed`, `is_closed` (approved), `is_locked` with `locked_reason` and
        `invoice` ({"id": 13150403, "number": "1001"}) are Harvest's billing state."""
        user = self.users[user_id]
        project = self.projects[project_id]
        entry_id = entry_id if entry_id is not None else next(self._ids)
        hours = Decimal(hours)
        entry = published.load("harvest", "time_entries_list.json")["time_entries"][0]
        entry["task_assignment"]["billable"] = billable
        entry.update(
            {
                "id": entry_id,
                "spent_date": str(spent_date),
                "user": {"id": user_id, "name": f"{user['first_name']} {user['last_name']}"},
                "client": dict(project["client"]),
                "project": {"id": project_id, "name": project["name"], "code": project["code"]},
                "task": {"id": 8000000 + len(task), "name": task},
                "hours": hours,
                "hours_without_timer": hours,
                "rounded_hours": Decimal(rounded_hours) if rounded_hours is not None else hours,
                "notes": notes,
                "created_at": updated_at,
                "updated_at": updated_at,
                "is_locked": is_locked,
                "locked_reason": locked_reason,
                "is_closed": is_closed,
                "is_billed": is_billed,
                "timer_started_at": utc_now_text() if is_running else None,
                "started_time": started_time,
                "ended_time": None,
                "is_running": is_running,
                "invoice": invoice,
                "external_reference": None,
                "billable": billable,
                "budgeted": True,
                "billable_rate": Decimal("100.0") if billable else None,
                "cost_rate": Decimal("50.0"),
            }
        )
        with self._lock:
            self.entries[entry_id] = entry
        return entry

    def edit_entry(self, entry_id: int, **changes: Any) -> dict[str, Any]:
        with self._lock:
            entry = self.entries[entry_id]
            for key, value in changes.items():
                entry[key] = Decimal(value) if key in ("hours", "rounded_hours") else value
            if "hours" in changes and "rounded_hours" not in changes:
                entry["rounded_hours"] = entry["hours"]
            entry["updated_at"] = utc_now_text()
            return entry

    def delete_entry(self, entry_id: int) -> None:
        with self._lock:
            del self.entries[entry_id]

    # --- switches ----------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int | None = 503,
        delay: float = 0,
        retry_after: int | None = None,
        path: str = "",
    ) -> None:
        for _ in range(count):
            self.faults.append(
                Fault(status=status, delay=delay, retry_after=retry_after, path=path)
            )

    def hold_page(self, page: int) -> Hold:
        """The `page`-th request for time entries (counted over the fake's life) waits."""
        hold = Hold(page=page)
        self.holds.append(hold)
        return hold

    def entry_requests(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.path.endswith("/time_entries")]

    # --- answering ---------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path in path:
                    self.faults.remove(fault)
                    return fault
        return None

    def _over_limit(self) -> int | None:
        if self.rate_limit is None:
            return None
        limit, window = self.rate_limit
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] >= window:
                self._recent.popleft()
            if len(self._recent) >= limit:
                return max(1, int(window - (now - self._recent[0]) + 0.999))
            self._recent.append(now)
        return None

    def answer(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        if not headers.get("user-agent"):
            return 400, {}, "Bad Request"
        if (
            headers.get("authorization") != f"Bearer {self.token}"
            or headers.get("harvest-account-id") != self.account_id
        ):
            return 401, {}, INVALID_TOKEN
        if fault := self._take_fault(path):
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                extra = (
                    {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                )
                return fault.status, extra, {"message": f"fake fault {fault.status}"}
        if (wait := self._over_limit()) is not None:
            # Status and Retry-After as documented; no body is published, so none is sent
            # (tests/fixtures/harvest/rate_limited_429.json).
            return 429, {"Retry-After": str(wait)}, ""
        if path == "/v2/time_entries":
            return self._list("time_entries", query, self._matching_entries)
        if path == "/v2/users/me":
            return 200, {}, min(self.users.values(), key=lambda u: u["id"])
        if path == "/v2/users":
            return self._list(
                "users", query, lambda filters: sorted(self.users.values(), key=lambda u: u["id"])
            )
        return 404, {}, {"message": "Not found"}

    def _matching_entries(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self.entries.values())
        if since := filters.get("updated_since"):
            entries = [e for e in entries if e["updated_at"] >= since]
        if start := filters.get("from"):
            entries = [e for e in entries if e["spent_date"] >= start]
        if end := filters.get("to"):
            entries = [e for e in entries if e["spent_date"] <= end]
        if "is_running" in filters:
            running = filters["is_running"] == "true"
            entries = [e for e in entries if e["is_running"] == running]
        return sorted(entries, key=lambda e: (e["spent_date"], e["id"]))

    def _list(
        self, key: str, query: dict[str, str], select: Any
    ) -> tuple[int, dict[str, str], Any]:
        if cursor := query.get("cursor"):
            state = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            filters, per_page, offset = (
                state["filters"],
                state["per_page"],
                state["after"]["offset"],
            )
            page = None
        else:
            filters = {
                k: v for k, v in query.items() if k not in ("page", "per_page", "cursor", "ref")
            }
            try:
                per_page = int(query.get("per_page", MAX_PER_PAGE))
                page = int(query.get("page", 1))
            except ValueError:
                return 422, {}, {"message": "per_page and page must be numbers"}
            if not 1 <= per_page <= MAX_PER_PAGE:
                return 422, {}, {"message": f"per_page must be between 1 and {MAX_PER_PAGE}"}
            offset = (page - 1) * per_page
        if key == "time_entries":
            self.entry_pages_served += 1
            for hold in self.holds:
                if hold.page == self.entry_pages_served:
                    hold.reached.set()
                    hold.release.wait(timeout=60)
        items = select(filters)
        chunk = items[offset : offset + per_page]
        total_pages = max(1, -(-len(items) // per_page))
        more = offset + per_page < len(items)
        base = f"{self.url}/{key}"
        if self.pagination == "cursor" and "page" not in query:

            def cursor_link(position: int) -> str:
                state = {"filters": filters, "per_page": per_page, "after": {"offset": position}}
                token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
                query = {"cursor": token, "per_page": per_page, "ref": "next_cursor"}
                return f"{base}?{urlencode(query)}"

            next_link = cursor_link(offset + per_page) if more else None
            first_page = offset == 0
            body_page = 1 if first_page else (total_pages if not more else None)
            next_page = 2 if first_page and more else None
        else:
            current = page or 1

            def page_link(number: int) -> str:
                return f"{base}?{urlencode({**filters, 'page': number, 'per_page': per_page})}"

            next_link = page_link(current + 1) if more else None
            body_page = current
            next_page = current + 1 if more else None
        first = f"{base}?{urlencode({**filters, 'page': 1, 'per_page': per_page})}"
        last = f"{base}?{urlencode({**filters, 'page': total_pages, 'per_page': per_page})}"
        return (
            200,
            {},
            {
                key: chunk,
                "per_page": per_page,
                "total_pages": total_pages,
                "total_entries": len(items),
                "next_page": next_page,
                "previous_page": None,
                "page": body_page,
                "links": {"first": first, "next": next_link, "previous": None, "last": last},
            },
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # a JSON number, as Harvest sends (test code: exact for 2-3 dp)
    raise TypeError(f"not JSON: {value!r}")


class Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        started = time.perf_counter()
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        arrived = time.monotonic()
        fake.requests.append(Seen("GET", parts.path, query, headers, arrived))
        status, extra, body = fake.answer(parts.path, query, headers)
        fake.answers.append((parts.path, status, arrived))
        if isinstance(body, str):
            data, content_type = body.encode(), "text/plain"
        else:
            data, content_type = (
                json.dumps(body, default=_json_default).encode(),
                "application/json",
            )
        try:
            # A client that gave up (a timeout test) gets nothing, quietly.
            serving.send_json(self, status, data, extra, f"{content_type}; charset=utf-8")
        finally:
            fake.busy_seconds += time.perf_counter() - started


class FakeServer(serving.FakeServer):
    url_path = "/v2"


def start(fake: FakeHarvest | None = None, port: int = 0) -> tuple[FakeHarvest, FakeServer]:
    return serving.start(fake or FakeHarvest(), Handler, port, server_class=FakeServer)


@pytest.fixture
def harvest_server() -> Iterator[FakeHarvest]:
    with serving.serving(FakeHarvest(), Handler, server_class=FakeServer) as fake:
        try:
            yield fake
        finally:
            for hold in fake.holds:
                hold.release.set()


def populate(fake: FakeHarvest, *, entries: int, days: int = 30, people: int = 20) -> None:
    """A firm's month: `people` users on 10 projects of 5 clients, `entries` entries spread
    over the last `days` days."""
    today = dt.date.today()
    for n in range(people):
        fake.add_user(1000 + n, f"Person{n}", "Example", f"person{n}@example.com")
    for n in range(10):
        fake.add_project(2000 + n, f"Project {n}", f"P{n}", 3000 + n % 5, f"Client {n % 5}")
    notes = ["Drafted the motion", "Client call re: scope", "Code review", "Sync w/ client", ""]
    for n in range(entries):
        fake.add_entry(
            user_id=1000 + n % people,
            project_id=2000 + n % 10,
            spent_date=today - dt.timedelta(days=n % days),
            hours=Decimal(n % 16 + 1) / 4,
            notes=notes[n % len(notes)] + (f" #{n}" if n % 7 == 0 else ""),
            task=("Dev", "Meetings", "Research")[n % 3],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--token", default="harvest-token")
    parser.add_argument("--account", default="4242")
    args = parser.parse_args()
    fake = FakeHarvest(token=args.token, account_id=args.account)
    populate(fake, entries=args.entries)
    fake, server = start(fake, args.port)
    print(f"fake Harvest at {fake.url} (token {args.token!r}, account {args.account!r})")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
