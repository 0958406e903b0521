"""One run of one connection: taken in turn under a PostgreSQL advisory lock, recorded as a
`SyncRun`, and its outcome (succeeded, stopped, failing, deferred) set on the connection."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError
from django.db import connection as db
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from integrations.encryption import SecretUnreadable, decrypt, encrypt
from timesheets.models import SyncRun, TrackerConnection
from timesheets.sync.errors import (
    AUTH_ERRORS,
    PERMISSION_ERRORS,
    RATE_ERRORS,
    RESPONSE_ERRORS,
    TRANSIENT_ERRORS,
    ConnectionMisconfigured,
    ConnectionNotSyncable,
)
from timesheets.sync.fetch_plan import read_listings
from timesheets.sync.mapping import RunMappings, rematch_unmapped
from timesheets.sync.options import sync_options
from timesheets.sync.readers import make_reader
from timesheets.sync.storing import MAX_ERROR_MESSAGES, PageWriter

# The package's logger: records are named timesheets.sync whichever module logs them.
logger = logging.getLogger(__package__)

# pg_try_advisory_lock(bigint) key: this namespace in the high 32 bits, the connection id in the
# low 32. The CSV import's lock is one fixed key in the same bigint space, far from these.
SYNC_LOCK_NAMESPACE = 0x53594E43  # "SYNC"


@contextmanager
def connection_lock(connection_id: int) -> Iterator[bool]:
    """This session's advisory lock of the connection: True if we hold it, False if another
    session (a sync still running) does. Released on exit, or when the session ends."""
    if not 0 < connection_id < 2**32:
        raise ValueError(f"connection id out of the lock's range: {connection_id}")
    key = (SYNC_LOCK_NAMESPACE << 32) | connection_id
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with db.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
            except DatabaseError:
                # The session is gone, and PostgreSQL released its locks with it.
                logger.warning("could not release the sync lock of connection %s", connection_id)


def sync_connection(*, connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULE) -> SyncRun:
    """Run one sync of one connection now (if no other run of it is running) and return its
    record. Raises ConnectionNotSyncable for a disabled or stopped connection."""
    conn = TrackerConnection.objects.get(pk=connection_id)
    if not conn.is_enabled:
        raise ConnectionNotSyncable(f"{conn.name} is disabled")
    if conn.status == TrackerConnection.Status.STOPPED:
        raise ConnectionNotSyncable(f"{conn.name} is stopped: {conn.status_reason}")
    with connection_lock(conn.pk) as acquired:
        now = timezone.now()
        if not acquired:
            logger.info("sync of %s skipped: another run holds its lock", conn.name)
            return SyncRun.objects.create(
                connection=conn,
                trigger=trigger,
                status=SyncRun.Status.SKIPPED,
                started_at=now,
                finished_at=now,
                progress="another sync of this connection was running; nothing done",
            )
        # Whatever is still "running" died without releasing the lock (a killed worker).
        SyncRun.objects.filter(connection=conn, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.ABANDONED, finished_at=now
        )
        conn.refresh_from_db()
        run = SyncRun.objects.create(
            connection=conn,
            trigger=trigger,
            started_at=now,
            cursor_before=conn.cursor,
            progress="starting",
        )
        SyncRunner(conn, run).execute()
        run.refresh_from_db()
        return run


def due_connections(*, now: dt.datetime | None = None) -> QuerySet[TrackerConnection]:
    """Connections the schedule syncs now: enabled, not stopped, not deferred by a rate limit."""
    now = now or timezone.now()
    return (
        TrackerConnection.objects.filter(is_enabled=True)
        .exclude(status=TrackerConnection.Status.STOPPED)
        .filter(Q(retry_after__isnull=True) | Q(retry_after__lte=now))
    )


def set_token(*, connection: TrackerConnection, token: str) -> None:
    """Store a new token (encrypted) and give a connection stopped by a refused token another
    chance. The caller saves the connection."""
    connection.token_encrypted = encrypt(token.strip())
    connection.token_set_at = timezone.now()
    if connection.status == TrackerConnection.Status.STOPPED:
        connection.status = TrackerConnection.Status.ACTIVE
        connection.status_reason = "new token saved; the next run tries it"
        connection.status_changed_at = timezone.now()
        connection.consecutive_failures = 0


class SyncRunner:
    """One run of one connection: reads through a `PageWriter`, then records how it ended."""

    def __init__(self, conn: TrackerConnection, run: SyncRun) -> None:
        self.conn = conn
        self.run = run
        self.window_read = False
        self.problems: list[str] = []  # entries that could not be stored
        self.warnings: list[str] = []

    # --- outcome ---------------------------------------------------------------------------

    def execute(self) -> None:
        finished = False
        try:
            self._sync()
            self._succeed()
            finished = True
        except AUTH_ERRORS + PERMISSION_ERRORS as exc:
            self._stop(f"the tracker refused the token: {exc}. Save a new token to resume.")
            finished = True
        except SecretUnreadable:
            self._stop(
                "the saved token cannot be decrypted with BILLABLES_ENCRYPTION_KEYS; "
                "save the token again"
            )
            finished = True
        except ConnectionMisconfigured as exc:
            self._stop(f"{exc}. Correct the connection to resume.")
            finished = True
        except RATE_ERRORS as exc:
            self._defer(str(exc), exc.retry_after)
            finished = True
        except TRANSIENT_ERRORS + RESPONSE_ERRORS as exc:
            self._fail(str(exc))
            finished = True
        finally:
            if not finished:
                # Not caught: the error goes on to the worker's log and django-q's record.
                self._fail("the run stopped on an unexpected error (see the worker log)")

    def _finish(self, status: str, message: str = "", *, progress: str | None = None) -> None:
        run = SyncRun.objects.get(pk=self.run.pk)
        messages = list(run.error_messages)
        if message:
            messages = [*messages, message][-MAX_ERROR_MESSAGES:]
        SyncRun.objects.filter(pk=self.run.pk).update(
            status=status,
            finished_at=timezone.now(),
            error_messages=messages,
            errors=F("errors") + (1 if message else 0),
            progress=(progress or f"{SyncRun.Status(status).label}. {run.progress}")[:300],
        )
        logger.info("sync of %s: %s %s", self.conn.name, status, message)

    def _set_status(self, status: str, reason: str, **fields: Any) -> None:
        changed = self.conn.status != status
        TrackerConnection.objects.filter(pk=self.conn.pk).update(
            status=status,
            status_reason=reason,
            **({"status_changed_at": timezone.now()} if changed else {}),
            **fields,
        )

    def _cursor_after(self) -> dt.datetime:
        """Everything changed since this instant minus the overlap is read by the next run."""
        if self.conn.cursor is None and self.conn.backfill_position is not None:
            # A backfill that took several runs: changes made to days read by its first runs
            # are only asked for if the cursor goes back to its first run.
            earlier = SyncRun.objects.filter(
                connection=self.conn, cursor_before__isnull=True, started_at__lt=self.run.started_at
            ).exclude(status=SyncRun.Status.SKIPPED)
            if self.conn.last_success_at:
                earlier = earlier.filter(started_at__gt=self.conn.last_success_at)
            first = earlier.order_by("started_at").values_list("started_at", flat=True).first()
            if first is not None:
                return first
        return self.run.started_at

    def _succeed(self) -> None:
        cursor = self._cursor_after()
        notes = self.warnings + self.problems[:3]
        self._set_status(
            TrackerConnection.Status.ACTIVE,
            ("last run: " + "; ".join(notes))[:1000] if notes else "",
            cursor=cursor,
            last_success_at=timezone.now(),
            consecutive_failures=0,
            retry_after=None,
            backfill_position=None,
            **({"window_checked_at": self.run.started_at} if self.window_read else {}),
        )
        SyncRun.objects.filter(pk=self.run.pk).update(
            cursor_after=cursor,
            error_messages=(self.warnings + self.problems)[-MAX_ERROR_MESSAGES:],
        )
        not_stored = len(self.problems)
        self._finish(
            SyncRun.Status.SUCCEEDED,
            progress="done"
            + (
                f"; {not_stored} entr{'y' if not_stored == 1 else 'ies'} not stored"
                if not_stored
                else ""
            ),
        )

    def _stop(self, reason: str) -> None:
        self._set_status(TrackerConnection.Status.STOPPED, reason)
        self._finish(SyncRun.Status.FAILED, reason)

    def _fail(self, reason: str) -> None:
        failures = self.conn.consecutive_failures + 1
        self._set_status(
            TrackerConnection.Status.FAILING,
            f"{reason} ({failures} failed run{'s' if failures > 1 else ''} in a row; "
            "tried again every run)",
            consecutive_failures=failures,
        )
        self._finish(SyncRun.Status.FAILED, reason)

    def _defer(self, reason: str, seconds: int | None) -> None:
        until = timezone.now() + dt.timedelta(seconds=seconds or 3600)
        TrackerConnection.objects.filter(pk=self.conn.pk).update(
            retry_after=until,
            status_reason=f"{reason}; the schedule resumes after {until:%Y-%m-%d %H:%M} UTC",
        )
        self._finish(SyncRun.Status.RATE_LIMITED, reason)

    # --- reading -----------------------------------------------------------------------------

    def _sync(self) -> None:
        conn = self.conn
        options = sync_options(kind=conn.kind, options=conn.options)
        token = decrypt(conn.token_encrypted)
        if not token:
            raise ConnectionMisconfigured("no token saved")
        reader = make_reader(conn, options, token)
        self.warnings = reader.warnings
        writer = PageWriter(conn, self.run, options, RunMappings(conn, reader))
        self.problems = writer.problems

        rematch_unmapped(conn)
        writer.release_held()
        self.window_read = read_listings(
            conn=conn, options=options, reader=reader, writer=writer, now=self.run.started_at
        )
