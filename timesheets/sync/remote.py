"""What every tracker's entries become, and what a reader of one tracker API offers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol


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
    # The tracker's billing state (billing semantics 10.2): invoiced there, approved there
    # (None: the tracker does not say). Defaults, so entries held before these existed
    # (HeldEntry.data) still load.
    invoiced: bool = False
    approved: bool | None = None

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
