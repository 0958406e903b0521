"""What one run reads. A first run reads the rolling window (or from `sync_from`) day range by
day range and resumes where it stopped; later runs ask for what changed since the cursor minus
the overlap, or, from the report APIs that cannot filter on modification, re-read the days since
the cursor; every `window_every_hours` the rolling window is re-read in full, so deletions in it
are noticed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from timesheets.models import TrackerConnection
from timesheets.sync.deletions import notice_deletions
from timesheets.sync.options import SyncOptions
from timesheets.sync.readers import local_day_and_time
from timesheets.sync.remote import Listing, Reader
from timesheets.sync.storing import PageWriter

# A schedule that fires a little early still counts the hourly window re-read as due.
WINDOW_SLACK = dt.timedelta(minutes=5)


def read_listings(
    *,
    conn: TrackerConnection,
    options: SyncOptions,
    reader: Reader,
    writer: PageWriter,
    now: dt.datetime,
) -> bool:
    """Read what this run of `conn` (started `now`) has to, storing the pages through `writer`.
    True when the rolling window was read in full (a first run, or a window re-read that was
    due)."""
    today = now.astimezone(options.timezone).date()
    window_end = today + dt.timedelta(days=1)  # entries may be dated in the future
    window_start = today - dt.timedelta(days=conn.window_days)
    if conn.sync_from:
        window_start = max(window_start, conn.sync_from)

    if conn.cursor is None:
        # First run: read day range by day range, resuming after an earlier stop.
        start = conn.backfill_position or conn.sync_from or window_start
        for first, last in _chunks(start, window_end, options.chunk_days):
            read_listing(writer, reader.complete(first, last))
            TrackerConnection.objects.filter(pk=conn.pk).update(
                backfill_position=last + dt.timedelta(days=1)
            )
        return True

    since = conn.cursor - dt.timedelta(minutes=conn.overlap_minutes)
    due = conn.window_checked_at is None or (
        now - conn.window_checked_at >= dt.timedelta(hours=conn.window_every_hours) - WINDOW_SLACK
    )
    reach = reader.changes_reach
    if reader.lists_changes and (reach is None or now - since <= reach):
        read_listing(writer, reader.changed(since))  # type: ignore[attr-defined]
        start = window_start if due else None
    elif reader.lists_changes:
        reader.warnings.append(
            f"the last successful run is older than {reach.days} days, the furthest back "
            f"the tracker lists changes: the last {conn.window_days} days were read instead"
        )
        start, due = window_start, True
    else:
        # The report APIs list entries by date only: the days since the cursor are read
        # again in full (and with them the rolling window when it is due).
        start = local_day_and_time(since, options.timezone)[0]
        if conn.sync_from:
            start = max(start, conn.sync_from)
        if due:
            start = min(start, window_start)
    if start is not None:
        for first, last in _chunks(start, window_end, options.chunk_days):
            read_listing(writer, reader.complete(first, last))
    return due


def read_listing(writer: PageWriter, listing: Listing) -> None:
    """Store a listing's pages; after a complete listing of a window, notice what is gone."""
    seen: set[str] = set()
    for page in listing.pages:
        seen.update(entry.external_id for entry in page)
        writer.store(page, label=listing.label, fetched=True)
    if listing.window is not None:
        notice_deletions(writer, listing, seen)


def _chunks(start: dt.date, end: dt.date, days: int) -> Iterator[tuple[dt.date, dt.date]]:
    while start <= end:
        last = min(end, start + dt.timedelta(days=days - 1))
        yield start, last
        start = last + dt.timedelta(days=1)
