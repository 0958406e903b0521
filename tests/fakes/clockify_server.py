"""A local fake of the Clockify core API and Reports API over real HTTP.

Follows shared/specs/api-notes.md section 2: `X-Api-Key` (missing or wrong: 401
`{"message": "Full authentication is required to access this resource", "code": 1000}`), 24-hex
ids, and two hosts (here two path prefixes of one server, configured separately):

- core `{url}/api/v1`: `GET /workspaces/{ws}/users` and
  `GET /workspaces/{ws}/user/{user}/time-entries` (start/end on the start time, `hydrated`),
  bare JSON arrays paged by `page` / `page-size` (default 50) with no total; durations are
  ISO 8601 (`PT1H30M`); rates are cents; `tagIds` may be null; running entries have no end.
- reports `{url}/reports/v1`: `POST /workspaces/{ws}/reports/detailed`, paged by
  `detailedFilter.page` / `pageSize` (at most 1000), answering `{"totals": [...],
  "timeentries": [...]}` with `_id` and integer-second durations.
- 429 `{"message": "Too many requests", "code": 429}` without Retry-After.

Switches: `fail_next(...)`, `rate_limit = (n, seconds)`, `api_key = "other"`, `edit_entry`,
`delete_entry` (see tests/fakes/harvest_server.py for the same idea).

In tests: the `clockify_server` fixture. By hand:
    python -m tests.fakes.clockify_server --port 8102
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes import published, serving
from tests.fakes.serving import FakeServer

MAX_REPORT_PAGE_SIZE = 1000
UNAUTHORIZED = {"message": "Full authentication is required to access this resource", "code": 1000}


def hex_id(n: int) -> str:
    return f"{n:024x}"


def iso_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    text += f"{secs}S" if secs or text == "PT" else ""
    return text


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    status: int | None = 503
    delay: float = 0
    retry_after: int | None = None
    path: str = ""


Seen = serving.Seen


class FakeClockify:
    def __init__(self, *, api_key: str = "clockify-key", workspace_id: str = hex_id(0xC10C)):
        self.api_key = api_key
        self.workspace_id = workspace_id
        self.url = ""  # http://127.0.0.1:PORT
        self.users: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self.faults: deque[Fault] = deque()
        self.rate_limit: tuple[int, float] | None = None
        self._recent: deque[float] = deque()
        self._ids = itertools.count(0x64C777DDD3FCAB07CFBB0000)
        self._lock = threading.Lock()

    @property
    def core_url(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def reports_url(self) -> str:
        return f"{self.url}/reports/v1"

    # --- data ------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, email: str) -> None:
        # A copy of the published user (tests/fixtures/clockify/user.json), filled in.
        user = published.load("clockify", "user.json")
        user.update(
            id=user_id,
            name=name,
            email=email,
            status="ACTIVE",
            activeWorkspace=self.workspace_id,
            defaultWorkspace=self.workspace_id,
        )
        self.users[user_id] = user

    def add_project(self, project_id: str, name: str, client_name: str) -> None:
        self.projects[project_id] = {"id": project_id, "name": name, "clientName": client_name}

    def add_entry(
        self,
        *,
        user_id: str,
        project_id: str | None,
        start: dt.datetime,
        seconds: int | None,
        description: str = "",
        task: str | None = "Dev",
        billable: bool = True,
        rate_cents: int | None = 15000,
        entry_id: str | None = None,
        invoiced: bool | None = None,
        approval_status: str | None = None,
    ) -> dict[str, Any]:
        """`invoiced` and `approval_status` ("APPROVED", "PENDING") are served, when given, as
        `invoiced` and `approvalStatus` on both APIs: field names that are a guess [G] (the
        published entry shapes carry neither; see integrations/clockify.py)."""
        entry = {
            "id": entry_id or f"{next(self._ids):024x}",
            "userId": user_id,
            "projectId": project_id,
            "taskName": task,
            "description": description,
            "billable": billable,
            "start": start.astimezone(dt.UTC),
            "seconds": seconds,  # None: running
            "rate_cents": rate_cents,
            "invoiced": invoiced,
            "approval_status": approval_status,
        }
        with self._lock:
            self.entries[entry["id"]] = entry
        return entry

    def edit_entry(self, entry_id: str, **changes: Any) -> None:
        with self._lock:
            self.entries[entry_id].update(changes)

    def delete_entry(self, entry_id: str) -> None:
        with self._lock:
            del self.entries[entry_id]

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
            self.faults.append(Fault(status, delay, retry_after, path))

    # --- answering ---------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path in path:
                    self.faults.remove(fault)
                    return fault
        return None

    def _over_limit(self) -> bool:
        if self.rate_limit is None:
            return False
        limit, window = self.rate_limit
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] >= window:
                self._recent.popleft()
            if len(self._recent) >= limit:
                return True
            self._recent.append(now)
        return False

    def _sorted(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self.entries.values())
        return sorted(entries, key=lambda e: (e["start"], e["id"]))

    def answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if headers.get("x-api-key") != self.api_key:
            return 401, {}, UNAUTHORIZED
        if fault := self._take_fault(path):
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                extra = (
                    {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                )
                message = "Too many requests" if fault.status == 429 else "fake fault"
                return fault.status, extra, {"message": message, "code": fault.status}
        if self._over_limit():
            return 429, {}, {"message": "Too many requests", "code": 429}
        ws = f"/workspaces/{self.workspace_id}"
        if method == "POST" and path == f"/reports/v1{ws}/reports/detailed":
            return self._detailed(body)
        if method == "GET" and path == f"/api/v1{ws}/users":
            return self._paged(sorted(self.users.values(), key=lambda u: u["id"]), query)
        if method == "GET" and path == "/api/v1/user":
            return 200, {}, next(iter(self.users.values()))
        prefix = f"/api/v1{ws}/user/"
        if method == "GET" and path.startswith(prefix) and path.endswith("/time-entries"):
            user_id = path[len(prefix) : -len("/time-entries")]
            return self._user_entries(user_id, query)
        return 404, {}, {"message": "Not found", "code": 404}

    def _paged(self, items: list[Any], query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        page = int(query.get("page", 1))
        size = int(query.get("page-size", 50))
        if size > 5000 or size < 1 or page < 1:
            return 400, {}, {"message": "page-size must be between 1 and 5000", "code": 501}
        return 200, {}, items[(page - 1) * size : page * size]

    def _user_entries(self, user_id: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        entries = [e for e in self._sorted() if e["userId"] == user_id]
        if start := query.get("start"):
            entries = [e for e in entries if e["start"] >= parse_time(start)]
        if end := query.get("end"):
            entries = [e for e in entries if e["start"] <= parse_time(end)]
        hydrated = query.get("hydrated") == "true"
        return self._paged([self._core(e, hydrated) for e in entries], query)

    def _core(self, e: dict[str, Any], hydrated: bool) -> dict[str, Any]:
        end = e["start"] + dt.timedelta(seconds=e["seconds"]) if e["seconds"] is not None else None
        raw = {
            "id": e["id"],
            "description": e["description"],
            "userId": e["userId"],
            "workspaceId": self.workspace_id,
            "projectId": e["projectId"],
            "taskId": None,
            "tagIds": None,
            "billable": e["billable"],
            "isLocked": False,
            "kioskId": None,
            "type": "REGULAR",
            "timeInterval": {
                "start": format_time(e["start"]),
                "end": format_time(end) if end else None,
                "duration": iso_duration(e["seconds"]) if e["seconds"] is not None else None,
            },
            "hourlyRate": {"amount": e["rate_cents"], "currency": "USD"}
            if e["rate_cents"] is not None
            else None,
            "costRate": None,
            "customFieldValues": [],
            **self._billing_state(e),
        }
        if hydrated:
            project = self.projects.get(e["projectId"] or "")
            raw["project"] = dict(project) if project else None
            raw["task"] = {"id": hex_id(7), "name": e["taskName"]} if e["taskName"] else None
        return raw

    @staticmethod
    def _billing_state(e: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if e.get("invoiced") is not None:
            state["invoiced"] = e["invoiced"]  # [G]
        if e.get("approval_status") is not None:
            state["approvalStatus"] = e["approval_status"]  # [G]
        return state

    def _detailed(self, body: Any) -> tuple[int, dict[str, str], Any]:
        try:
            start = parse_time(body["dateRangeStart"])
            end = parse_time(body["dateRangeEnd"])
            page = int(body["detailedFilter"]["page"])
            size = int(body["detailedFilter"]["pageSize"])
        except (KeyError, TypeError, ValueError):
            return (
                400,
                {},
                {
                    "message": "dateRangeStart, dateRangeEnd and detailedFilter are required",
                    "code": 501,
                },
            )
        if not 1 <= size <= MAX_REPORT_PAGE_SIZE:
            return 400, {}, {"message": "pageSize must be between 1 and 1000", "code": 501}
        entries = [e for e in self._sorted() if start <= e["start"] <= end]
        chunk = entries[(page - 1) * size : page * size]
        rows = []
        for e in chunk:
            user = self.users[e["userId"]]
            project = self.projects.get(e["projectId"] or "", {})
            end_at = (
                e["start"] + dt.timedelta(seconds=e["seconds"])
                if e["seconds"] is not None
                else None
            )
            # A copy of the published report entry (tests/fixtures/clockify), filled in.
            row = published.load("clockify", "detailed_report.json")["timeentries"][0]
            row.update(
                {
                    "_id": e["id"],
                    "description": e["description"],
                    "userId": e["userId"],
                    "userName": user["name"],
                    "userEmail": user["email"],
                    "projectId": e["projectId"],
                    "projectName": project.get("name"),
                    "clientId": None,
                    "clientName": project.get("clientName"),
                    "taskId": None,
                    "taskName": e["taskName"],
                    "billable": e["billable"],
                    "tags": [],
                    "approvalRequestId": None,
                    "type": "REGULAR",
                    # [G] monetary fields on report entries (api-notes 2.3)
                    "hourlyRate": {"amount": e["rate_cents"], "currency": "USD"}
                    if e["rate_cents"] is not None
                    else None,
                    "timeInterval": {
                        "start": format_time(e["start"]),
                        "end": format_time(end_at) if end_at else None,
                        "duration": e["seconds"],
                    },
                    **self._billing_state(e),
                }
            )
            rows.append(row)
        total = sum(e["seconds"] or 0 for e in entries)
        totals = [
            {
                "id": None,
                "totalTime": total,
                "totalBillableTime": total,
                "entriesCount": len(entries),
            }
        ]
        return 200, {}, {"totals": totals, "timeentries": rows}


Handler = serving.JsonApiHandler


def start(fake: FakeClockify | None = None, port: int = 0) -> tuple[FakeClockify, FakeServer]:
    return serving.start(fake or FakeClockify(), Handler, port)


@pytest.fixture
def clockify_server() -> Iterator[FakeClockify]:
    with serving.serving(FakeClockify(), Handler) as fake:
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--api-key", default="clockify-key")
    args = parser.parse_args()
    fake = FakeClockify(api_key=args.api_key)
    fake.add_user(hex_id(1), "Ana Pereira", "ana@example.com")
    fake.add_project(hex_id(2), "Website", "Acme")
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    for n in range(args.entries):
        fake.add_entry(
            user_id=hex_id(1),
            project_id=hex_id(2),
            start=now - dt.timedelta(hours=3 * n + 2),
            seconds=900 * (n % 8 + 1),
            description=f"Work item {n}",
        )
    fake, server = start(fake, args.port)
    print(
        f"fake Clockify: core {fake.core_url}, reports {fake.reports_url}, workspace "
        f"{fake.workspace_id}, key {args.api_key!r}"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
