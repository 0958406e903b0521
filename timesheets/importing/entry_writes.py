"""Entries of a file import written from plain values, a chunk at a time: looked up, planned and
written with a handful of statements per chunk and no model instance per row.

New entries go in by COPY, with ids drawn from the table's sequence first (COPY returns none);
changed ones by UPDATE ... FROM VALUES (`bulk_updates.update_rows`). The triggers of the entry
table run per statement, so the audit trail and the stale marks see COPY as they see INSERT.

Planning follows `service._plan`: new; deleted at the source and not on an approved invoice
(restored, as changed); same content (unchanged, and a recorded source change is settled);
on an approved invoice (frozen: the source's version recorded beside it); otherwise changed.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from django.db import connection

from timesheets.importing.bulk_updates import update_rows
from timesheets.models import TimeEntry

ENTRY_TABLE = TimeEntry._meta.db_table

# Written for a new entry, in this order (the COPY's column list).
NEW_COLUMNS = (
    "id",
    "source",
    "external_id",
    "person_id",
    "client_id",
    "project_id",
    "task",
    "date",
    "start_time",
    "duration_seconds",
    "notes",
    "normalized_notes",
    "tracker_billable",
    "tracker_invoiced",
    "tracker_approved",
    "content_hash",
    "locked",
    "pending_source_change",
    "import_batch_id",
    "connection_id",
    "source_updated_at",
    "deleted_at",
    "created_at",
    "updated_at",
)
# What an update writes, and so everything the source may change.
CONTENT_FIELDS = (
    "person",
    "client",
    "project",
    "task",
    "date",
    "start_time",
    "duration_seconds",
    "notes",
    "normalized_notes",
    "tracker_billable",
    "tracker_invoiced",
    "tracker_approved",
    "content_hash",
)
# Written with the content: where the entry came from, and that it is (again) at the source.
SYNC_FIELDS = ("connection", "source_updated_at", "deleted_at")
# Written for a changed entry: its content, that it is (again) at the source, from this file.
CHANGED_FIELDS = (
    *CONTENT_FIELDS,
    *SYNC_FIELDS,
    "pending_source_change",
    "import_batch",
    "updated_at",
)


@dataclass(slots=True)
class RowEntry:
    """One row of a file as the entry stores it."""

    external_id: str
    content_hash: str
    person_id: int
    client_id: int
    project_id: int
    task: str
    date: date
    start_time: time | None
    duration_seconds: int
    notes: str
    normalized_notes: str
    tracker_billable: bool
    tracker_invoiced: bool
    tracker_approved: bool | None

    def columns(self) -> tuple[Any, ...]:
        """The values of `CONTENT_FIELDS`, in their order, as COPY and UPDATE write them."""
        return (
            self.person_id,
            self.client_id,
            self.project_id,
            self.task,
            self.date,
            self.start_time,
            self.duration_seconds,
            self.notes,
            self.normalized_notes,
            self.tracker_billable,
            self.tracker_invoiced,
            self.tracker_approved,
            self.content_hash,
        )

    def content(self) -> dict[str, Any]:
        """As `service.EntryValues.content()` gives it (what a recorded source change holds)."""
        content: dict[str, Any] = {
            "person_id": self.person_id,
            "client_id": self.client_id,
            "project_id": self.project_id,
            "task": self.task,
            "date": self.date.isoformat(),
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "duration_seconds": self.duration_seconds,
            "notes": self.notes,
            "tracker_billable": self.tracker_billable,
        }
        if self.tracker_invoiced:
            content["tracker_invoiced"] = True
        if self.tracker_approved is not None:
            content["tracker_approved"] = self.tracker_approved
        return content


@dataclass
class ChunkOutcome:
    created_ids: list[int] = field(default_factory=list)
    updated_ids: list[int] = field(default_factory=list)
    # On an approved invoice and changed at the source: recorded, not applied.
    frozen_ids: list[int] = field(default_factory=list)
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class _Stored:
    id: int
    content_hash: str
    locked: bool
    pending: bool
    deleted: bool


def _stored(source: str, keys: list[str]) -> dict[str, _Stored]:
    """Entries already stored under these keys (deleted ones too: they come back), locked until
    the import commits so that an approval cannot lock one between this read and our update.
    The keys travel as one text (hex digits and a prefix, never a comma): one parameter."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT external_id, id, content_hash, locked, pending_source_change IS NOT NULL, "
            f"deleted_at IS NOT NULL FROM {ENTRY_TABLE} "
            "WHERE source = %s AND external_id = ANY(string_to_array(%s, ',')) FOR UPDATE",
            [source, ",".join(keys)],
        )
        return {row[0]: _Stored(*row[1:]) for row in cursor.fetchall()}


def _new_ids(count: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [ENTRY_TABLE, count],
        )
        return [row[0] for row in cursor.fetchall()]


def _insert(source: str, entries: list[RowEntry], *, batch_id: int, now: datetime) -> list[int]:
    ids = _new_ids(len(entries))
    columns = ", ".join(NEW_COLUMNS)
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {ENTRY_TABLE} ({columns}) FROM STDIN") as copy,
    ):
        write = copy.write_row
        for entry_id, e in zip(ids, entries, strict=True):
            write(
                (
                    entry_id,
                    source,
                    e.external_id,
                    *e.columns(),
                    False,
                    None,
                    batch_id,
                    None,
                    None,
                    None,
                    now,
                    now,
                )
            )
    return ids


def _update_changed(changed: list[tuple[int, RowEntry]], *, batch_id: int, now: datetime) -> None:
    # The source's values are now the entry's: a change recorded while the entry was on an
    # invoice that has since been voided is no longer pending.
    update_rows(
        TimeEntry,
        CHANGED_FIELDS,
        [
            (
                entry_id,
                *e.columns(),
                None,
                None,
                None,
                None,
                batch_id,
                now,
            )
            for entry_id, e in changed
        ],
    )


def _record_pending(
    frozen: list[tuple[int, RowEntry]], settled: list[int], *, batch_id: int, now: datetime
) -> None:
    adapt = connection.ops.adapt_json_value
    rows: list[tuple[Any, ...]] = [
        (
            entry_id,
            # The entry stays as billed; the source's version waits beside it for review.
            adapt(
                {
                    **e.content(),
                    # Always recorded (the content leaves the defaults out): applying the
                    # change must also take an invoiced or approved mark back.
                    "tracker_invoiced": e.tracker_invoiced,
                    "tracker_approved": e.tracker_approved,
                    "content_hash": e.content_hash,
                    "import_batch_id": batch_id,
                },
                None,
            ),
            now,
        )
        for entry_id, e in frozen
    ]
    rows += [(entry_id, None, now) for entry_id in settled]
    update_rows(TimeEntry, ("pending_source_change", "updated_at"), rows)


def write_chunk(
    *, source: str, entries: list[RowEntry], batch_id: int, now: datetime
) -> ChunkOutcome:
    """Store one chunk of a file's entries (keys distinct within the file), inside the
    import's transaction and under its lock."""
    outcome = ChunkOutcome()
    if not entries:
        return outcome
    stored = _stored(source, [e.external_id for e in entries])
    new: list[RowEntry] = []
    changed: list[tuple[int, RowEntry]] = []
    frozen: list[tuple[int, RowEntry]] = []
    settled: list[int] = []
    for e in entries:
        found = stored.get(e.external_id)
        if found is None:
            new.append(e)
        elif found.deleted and not found.locked:
            changed.append((found.id, e))  # back at the source: restored
        elif found.content_hash == e.content_hash:
            outcome.unchanged += 1
            if found.pending:
                settled.append(found.id)
        elif found.locked:
            frozen.append((found.id, e))
        else:
            changed.append((found.id, e))
    if new:
        outcome.created_ids = _insert(source, new, batch_id=batch_id, now=now)
    if changed:
        _update_changed(changed, batch_id=batch_id, now=now)
        outcome.updated_ids = [entry_id for entry_id, _ in changed]
    if frozen or settled:
        _record_pending(frozen, settled, batch_id=batch_id, now=now)
        outcome.frozen_ids = [entry_id for entry_id, _ in frozen]
    return outcome
