"""A local fake of Toggl Track API v9 and Reports API v3 over real HTTP.

Follows shared/specs/api-notes.md section 3: HTTP Basic auth with the token and the password
`api_token` (wrong: 403 with a plain-text body, as Toggl historically answers);

- `{url}/api/v9/me/time_entries`: a bare array, no paging; `since` (UNIX time) lists entries
  modified since, deleted ones included with `server_deleted_at`; `start_date`/`end_date`
  select by start; running entries have `duration: -1` and no `stop`; `at` is last-modified.
- `{url}/api/v9/me`, `{url}/api/v9/workspaces/{ws}/users` [G]: users with emails.
- `{url}/api/v9/workspaces/{ws}/projects` and `/clients`: the v9 project and client objects.
- `{url}/reports/api/v3/workspace/{ws}/search/time_entries` (POST): rows with `time_entries`,
  paged by the `X-Next-ID` / `X-Next-Row-Number` response headers, sent back as `first_id` /
  `first_row_number`. Rows carry ids (`project_id`, `user_id`, `task_id`), never names, as the
  published row schema; `start_date` and `end_date` are required (400 without), `page_size`
  above `MAX_REPORT_PAGE_SIZE` is a 400 [G on the maximum].

Every answer is built from the published examples in tests/fixtures/toggl (see its README):
the fake fills a copy of the example's object with its own values, so it has the example's keys.
- quotas: `hourly_quota = N` answers **402** (plain text, `X-Toggl-Quota-Resets-In`) once N
  requests were made in the last hour; `fail_next(status=429)` for the burst limiter.

In tests: the `toggl_server` fixture. By hand:
    python -m tests.fakes.toggl_server --port 8103
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes import published, serving
from tests.fakes.serving import FakeServer

MAX_REPORT_PAGE_SIZE = 1000  # [G] no maximum is published; the adapter's ceiling
DEFAULT_AT = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def stamp(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None


def parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass
class Fault:
    status: int | None = 503
    delay: float = 0
    retry_after: int | None = None
    path: str = ""


Seen = serving.Seen


class FakeToggl:
    def __init__(self, *, token: str = "toggl-token", workspace_id: int = 777) -> None:
        self.token = token
        self.workspace_id = workspace_id
        self.me_id = 42
        self.url = ""
        self.users: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.clients: dict[int, dict[str, Any]] = {}
        self.entries: dict[int, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self.faults: deque[Fault] = deque()
        self.hourly_quota: int | None = None
        self.quota_resets_in = 1800
        # The quota's clock: a test that paces with a fake clock gives the fake the same one.
        self.clock: Callable[[], float] = time.monotonic
        self._quota_used: deque[float] = deque()
        self._ids = itertools.count(436694100)
        self._lock = threading.Lock()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v9"

    @property
    def reports_url(self) -> str:
        return f"{self.url}/reports/api/v3"

    # --- data ------------------------------------------------------------------------------

    def add_user(self, user_id: int, name: str, email: str) -> None:
        self.users[user_id] = {"id": user_id, "fullname": name, "email": email}

    def add_project(self, project_id: int, name: str, client_name: str) -> None:
        """A project of the client named `client_name` ("": none), the client made if new."""
        client_id = None
        if client_name:
            client_id = next(
                (c["id"] for c in self.clients.values() if c["name"] == client_name),
                3001 + len(self.clients),
            )
            self.clients[client_id] = {"id": client_id, "name": client_name}
        self.projects[project_id] = {
            "id": project_id,
            "name": name,
            "client_id": client_id,
            "client_name": client_name,
        }

    def add_entry(
        self,
        *,
        user_id: int,
        project_id: int | None,
        start: dt.datetime,
        seconds: int | None,
        description: str = "",
        billable: bool = True,
        at: dt.datetime = DEFAULT_AT,
        rate_cents: int | None = 15000,
    ) -> dict[str, Any]:
        entry = {
            "id": next(self._ids),
            "user_id": user_id,
            "project_id": project_id,
            "description": description,
            "billable": billable,
            "start": start.astimezone(dt.UTC),
            "seconds": seconds,  # None: running
            "at": at,
            "deleted_at": None,
            "rate_cents": rate_cents,
        }
        with self._lock:
            self.entries[entry["id"]] = entry
        return entry

    def edit_entry(self, entry_id: int, **changes: Any) -> None:
        with self._lock:
            self.entries[entry_id].update(changes, at=dt.datetime.now(dt.UTC))

    def delete_entry(self, entry_id: int) -> None:
        """Kept as a tombstone: `since` still lists it, with `server_deleted_at`."""
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            self.entries[entry_id].update(deleted_at=now, at=now)

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

    def _authorized(self, headers: dict[str, str]) -> bool:
        expected = base64.b64encode(f"{self.token}:api_token".encode()).decode()
        return headers.get("authorization") == f"Basic {expected}"

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path in path:
                    self.faults.remove(fault)
                    return fault
        return None

    def _quota_left(self) -> bool:
        if self.hourly_quota is None:
            return True
        now = self.clock()
        with self._lock:
            while self._quota_used and now - self._quota_used[0] >= 3600:
                self._quota_used.popleft()
            if len(self._quota_used) >= self.hourly_quota:
                return False
            self._quota_used.append(now)
        return True

    def answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if not self._authorized(headers):
            return 403, {}, "Incorrect username and/or password"
        if fault := self._take_fault(path):
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                extra: dict[str, str] = {}
                if fault.retry_after is not None:
                    header = "X-Toggl-Quota-Resets-In" if fault.status == 402 else "Retry-After"
                    extra[header] = str(fault.retry_after)
                text = {
                    402: "You have hit your hourly limit for API calls",
                    429: "Too many requests",
                }
                return fault.status, extra, text.get(fault.status, "Internal Server Error")
        if not self._quota_left():
            return (
                402,
                {"X-Toggl-Quota-Resets-In": str(self.quota_resets_in)},
                "You have hit your hourly limit for API calls. Upgrade to raise the limit.",
            )
        if method == "GET" and path == "/api/v9/me/time_entries":
            return self._me_entries(query)
        if method == "GET" and path == "/api/v9/me":
            return 200, {}, self._me()
        ws = f"/api/v9/workspaces/{self.workspace_id}"
        if method == "GET" and path == f"{ws}/users":
            return 200, {}, sorted(self.users.values(), key=lambda u: u["id"])
        if method == "GET" and path == f"{ws}/projects":
            return 200, {}, [self._project(p) for p in sorted(self.projects.values(), key=_id)]
        if method == "GET" and path == f"{ws}/clients":
            return 200, {}, [self._client(c) for c in sorted(self.clients.values(), key=_id)]
        if method == "POST" and path == (
            f"/reports/api/v3/workspace/{self.workspace_id}/search/time_entries"
        ):
            return self._report(body)
        return 404, {}, "404 page not found"

    def _me_entries(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            entries = [e for e in self.entries.values() if e["user_id"] == self.me_id]
        if since := query.get("since"):
            moment = dt.datetime.fromtimestamp(int(since), dt.UTC)
            entries = [e for e in entries if e["at"] >= moment]
        else:
            entries = [e for e in entries if e["deleted_at"] is None]
            try:
                if start := query.get("start_date"):
                    entries = [e for e in entries if e["start"] >= parse_time(start)]
                if end := query.get("end_date"):
                    entries = [e for e in entries if e["start"] < parse_time(end)]
            except ValueError:
                return 400, {}, "Invalid start date"
        meta = query.get("meta") == "true"
        return 200, {}, [self._v9(e, meta) for e in sorted(entries, key=lambda e: e["start"])]

    def _v9(self, e: dict[str, Any], meta: bool) -> dict[str, Any]:
        running = e["seconds"] is None
        raw = {
            "id": e["id"],
            "workspace_id": self.workspace_id,
            "project_id": e["project_id"],
            "task_id": None,
            "billable": e["billable"],
            "start": stamp(e["start"]),
            "stop": None if running else stamp(e["start"] + dt.timedelta(seconds=e["seconds"])),
            "duration": -1 if running else e["seconds"],
            "description": e["description"],
            "tags": ["dev"],
            "tag_ids": [123],
            "duronly": True,
            "at": stamp(e["at"]),
            "server_deleted_at": stamp(e["deleted_at"]),
            "user_id": e["user_id"],
            "uid": e["user_id"],
            "wid": self.workspace_id,
            "pid": e["project_id"],
            "tid": None,
            "permissions": None,
            "shared_with": None,
            "expense_ids": [],
        }
        if meta:
            project = self.projects.get(e["project_id"] or 0, {})
            raw["project_name"] = project.get("name")
            raw["client_name"] = project.get("client_name")
        return raw

    def _me(self) -> dict[str, Any]:
        user = self.users[self.me_id]
        me = published.load("toggl", "me.json")
        me.update(
            id=user["id"],
            email=user["email"],
            fullname=user["fullname"],
            default_workspace_id=self.workspace_id,
        )
        return me

    def _project(self, project: dict[str, Any]) -> dict[str, Any]:
        raw = published.load("toggl", "projects.json")[0]
        raw.update(
            id=project["id"],
            workspace_id=self.workspace_id,
            wid=self.workspace_id,
            client_id=project["client_id"],
            cid=project["client_id"],
            name=project["name"],
        )
        return raw

    def _client(self, client: dict[str, Any]) -> dict[str, Any]:
        raw = published.load("toggl", "clients.json")[0]
        raw.update(id=client["id"], wid=self.workspace_id, name=client["name"])
        return raw

    def _report(self, body: Any) -> tuple[int, dict[str, str], Any]:
        try:
            start = dt.date.fromisoformat(body["start_date"])
            end = dt.date.fromisoformat(body["end_date"])
        except (KeyError, TypeError, ValueError):
            return 400, {}, "Invalid start date"
        size = int(body.get("page_size") or 50)
        if not 1 <= size <= MAX_REPORT_PAGE_SIZE:
            return 400, {}, f"page_size must be between 1 and {MAX_REPORT_PAGE_SIZE}"
        with self._lock:
            entries = [
                e
                for e in self.entries.values()
                if e["deleted_at"] is None
                and e["seconds"] is not None
                and start <= e["start"].date() <= end
            ]
        entries.sort(key=lambda e: (e["start"], e["id"]))
        first_row = int(body.get("first_row_number") or 1)
        if body.get("first_id") is not None:
            # Resume at the row the headers named (its id must be the one we sent).
            ids = [e["id"] for e in entries]
            if body["first_id"] in ids:
                first_row = ids.index(body["first_id"]) + 1
        chunk = entries[first_row - 1 : first_row - 1 + size]
        rows = []
        for number, e in enumerate(chunk, start=first_row):
            user = self.users[e["user_id"]]
            stop = e["start"] + dt.timedelta(seconds=e["seconds"])
            row = published.load("toggl", "reports_search_time_entries.json")["body"][0]
            [entry] = row["time_entries"]
            entry.update(
                id=e["id"],
                seconds=e["seconds"],
                start=stamp(e["start"]),
                stop=stamp(stop),
                at=stamp(e["at"]),
                at_tz=stamp(e["at"]),
            )
            row.update(
                user_id=e["user_id"],
                username=user["fullname"],
                project_id=e["project_id"],
                task_id=None,
                billable=e["billable"],
                description=e["description"],
                tag_ids=[123],
                billable_amount_in_cents=None
                if e["rate_cents"] is None
                else e["rate_cents"] * e["seconds"] // 3600,
                hourly_rate_in_cents=e["rate_cents"],
                currency="USD",
                row_number=number,
            )
            rows.append(row)
        headers: dict[str, str] = {}
        following = first_row - 1 + size
        if following < len(entries):
            headers["X-Next-ID"] = str(entries[following]["id"])
            headers["X-Next-Row-Number"] = str(following + 1)
        return 200, headers, rows


def _id(record: dict[str, Any]) -> int:
    return int(record["id"])


Handler = serving.JsonApiHandler


def start(fake: FakeToggl | None = None, port: int = 0) -> tuple[FakeToggl, FakeServer]:
    return serving.start(fake or FakeToggl(), Handler, port)


@pytest.fixture
def toggl_server() -> Iterator[FakeToggl]:
    with serving.serving(FakeToggl(), Handler) as fake:
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8103)
    parser.add_argument("--entries", type=int, default=120)
    parser.add_argument("--token", default="toggl-token")
    args = parser.parse_args()
    fake = FakeToggl(token=args.token)
    fake.add_user(fake.me_id, "Ana Pereira", "ana@example.com")
    fake.add_project(193791, "Website", "Acme")
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    for n in range(args.entries):
        fake.add_entry(
            user_id=fake.me_id,
            project_id=193791,
            start=now - dt.timedelta(hours=5 * n + 2),
            seconds=600 * (n % 9 + 1),
            description=f"Refactor item {n}",
        )
    fake, server = start(fake, args.port)
    print(
        f"fake Toggl: api {fake.api_url}, reports {fake.reports_url}, workspace "
        f"{fake.workspace_id}, token {args.token!r}"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
