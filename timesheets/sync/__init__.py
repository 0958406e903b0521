"""The hourly sync of time entries from Harvest v2, Clockify and Toggl Track APIs.

    run = sync_connection(connection_id=3, trigger=SyncRun.Trigger.COMMAND)

One run of one connection:

1. **One at a time.** A PostgreSQL session advisory lock keyed by the connection id is taken
   with `pg_try_advisory_lock`; a second run of the same connection (django-q2 delivers at least
   once and re-runs slow tasks) finds it taken, is recorded as *skipped* and does nothing. The
   lock is held across the run's many page transactions and released at the end, or by
   PostgreSQL itself when a killed worker's connection closes; the next run then marks the dead
   run *abandoned* and starts over from the connection's cursor.
2. **Incremental, with an overlap.** The cursor is the start of the last successful run (of the
   first run of a backfill that took several): the next run asks for what changed since then
   minus `overlap_minutes` (Harvest `updated_since`, Toggl `/me?since`), which also absorbs
   clock differences between us and the tracker. The report APIs cannot filter on modification
   (Clockify detailed report, Toggl Reports v3), so there the days since the cursor are re-read.
   The first run reads the rolling window, or from `sync_from`, day range by day range, and
   resumes where it stopped.
3. **Deletions within the rolling window.** Every `window_every_hours` the last `window_days`
   are re-read in full; an entry of this connection dated in that window that the tracker no
   longer lists is marked deleted (`deleted_at`; `TimeEntry.objects` no longer sees it). Toggl's
   `/me?since` also reports deletions itself (`server_deleted_at`).
4. **Upsert by (source, external id)** through the CSV import's `upsert_entries`, page by page,
   each page in its own transaction with the run's counters, so a stopped run keeps what it
   stored and a re-run finds it unchanged: nothing is lost or duplicated. An entry on an
   approved invoice (`locked`) that changes or disappears is not altered: the source's version
   (or `{"deleted": true}`) is recorded in `pending_source_change` and the entry is reported
   *frozen*, so billing flags its invoice.
5. **Mapping.** A tracker's users and projects are mapped to the firm's people and projects
   (`ExternalPerson`, `ExternalProject`): by email for people (so the same person in Harvest
   and Clockify is one person), by code or client and project name for projects, or by hand
   in the admin. Entries of an unmapped user or project wait as `HeldEntry` rows, listed in the
   admin, and are stored by the first run after both are mapped.
6. **Running timers are skipped**; they are stored once stopped.
7. **After each page commits**, a django-q2 task (`timesheets.tasks.announce_synced_entries`)
   enqueued in the page's own transaction sends `entries_imported`, so billing classifies the
   new and changed entries and flags drafts and approved invoices; it cannot be lost between
   the commit and the enqueue.

Errors: a refused token stops the connection (status *stopped*, with the tracker's words) until
someone saves a new token; transient failures (5xx, timeouts) are retried by the adapters and,
when they persist, fail the run and mark the connection *failing* (it is tried again every
run); a rate limit or quota whose retry hint is too long to wait defers the connection until
then (`retry_after`).

Modules:

    runner.py       one run: the lock, the SyncRun record, the outcome on the connection
    fetch_plan.py   what a run reads: a first run's backfill, changes since the cursor, the window
    deletions.py    entries the tracker no longer lists, marked deleted (or frozen)
    storing.py      pages planned and written, counted on the run, announced to billing
    mapping.py      tracker users and projects mapped to the firm's people and projects
    readers.py      each tracker API's entries as RemoteEntry pages
    remote.py       what every tracker's entries become
    options.py      a connection's options, checked
    errors.py       the sync's own errors, and the trackers' errors grouped by what a run does
"""

from timesheets.sync.errors import ConnectionMisconfigured, ConnectionNotSyncable, SyncError
from timesheets.sync.mapping import match_projects, people_by_email, rematch_unmapped
from timesheets.sync.options import SyncOptions, sync_options
from timesheets.sync.readers import make_reader
from timesheets.sync.remote import Listing, Reader, RemoteEntry, RemoteProject, RemoteUser
from timesheets.sync.runner import connection_lock, due_connections, set_token, sync_connection

__all__ = [
    "ConnectionMisconfigured",
    "ConnectionNotSyncable",
    "Listing",
    "Reader",
    "RemoteEntry",
    "RemoteProject",
    "RemoteUser",
    "SyncError",
    "SyncOptions",
    "connection_lock",
    "due_connections",
    "make_reader",
    "match_projects",
    "people_by_email",
    "rematch_unmapped",
    "set_token",
    "sync_connection",
    "sync_options",
]
