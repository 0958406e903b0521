"""A connection's options (which API, page size, timezone...), checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from timesheets.models import TrackerConnection
from timesheets.sync.errors import ConnectionMisconfigured

APIS = {
    TrackerConnection.Kind.HARVEST: ("v2",),
    TrackerConnection.Kind.CLOCKIFY: ("reports", "user"),
    TrackerConnection.Kind.TOGGL: ("reports", "me"),
}
PAGE_SIZES = {  # (default, maximum)
    TrackerConnection.Kind.HARVEST: (2000, 2000),
    TrackerConnection.Kind.CLOCKIFY: (1000, 1000),
    # Toggl: the largest page by default, each page being one request of an hourly quota.
    TrackerConnection.Kind.TOGGL: (1000, 1000),
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
