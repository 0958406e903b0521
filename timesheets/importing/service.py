"""Import one time-tracker export (CSV or XLSX): a file is either stored whole, in one
transaction, or refused whole with every problem listed. The file streams through in chunks
(`streaming`): its file-level problems refuse it before anything is written, and a row error
found after chunks were written rolls them back with the transaction.

`upsert_entries` is the one upsert of time entries by (source, external id): the file import and
the API sync (timesheets.sync) both store entries through it."""

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import partial
from pathlib import PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from timesheets.importing.bulk_updates import update_by_pk
from timesheets.importing.creating import Created, ReviewNeeded
from timesheets.importing.entry_writes import CHANGED_FIELDS
from timesheets.importing.errors import ImportRejected, RowError
from timesheets.importing.internal import INTERNAL_TIME_CHOICES, internal_client_name
from timesheets.importing.keys import Identity, content_hash
from timesheets.importing.limits import (
    FILE_TOO_LARGE_HINT,
    ImportLimits,
    file_too_large_reason,
)
from timesheets.importing.matching import Match
from timesheets.importing.rows import ParsedRow
from timesheets.importing.streaming import FileImporter, Progress, Survey, survey
from timesheets.importing.values import DATE_ORDERS, DateOrder
from timesheets.models import Client, ImportBatch, Person, Project, TimeEntry
from timesheets.notes import normalize_notes
from timesheets.signals import entries_imported

# Rows per INSERT / UPDATE statement and per lookup of existing keys: large enough that 100,000
# rows take a few dozen statements, small enough to stay far below PostgreSQL's limit of 65,535
# parameters per statement (an entry has 17 columns).
BATCH_SIZE = 2000
# An import that creates at least this many entries refreshes the table's planner statistics.
ANALYZE_AFTER_ROWS = 5000

# Imports run one at a time (a transaction-scoped advisory lock). Two overlapping files imported
# at once would otherwise both see a key as new, and the second would fail on the unique
# constraint after all its work; in turn, the second sees the first's entries as existing.
IMPORT_LOCK_ID = int.from_bytes(hashlib.sha256(b"timesheets.importing").digest()[:8], "big") >> 1


@dataclass(frozen=True)
class ImportResult:
    batch: ImportBatch
    source: str
    rows: int
    created: int
    updated: int
    unchanged: int
    frozen_changes: int
    # Rows without a client: stored under the internal client, or skipped (IMPORT_INTERNAL_TIME).
    internal: int = 0
    internal_skipped: int = 0
    # Rows that are not work, by kind ("Break": 2): never stored.
    skipped: dict[str, int] = field(default_factory=dict)
    # With create_missing: the people, clients and projects created from the file.
    created_records: Created | None = None

    def summary(self) -> str:
        """ "harvest, 156 rows: 156 created, 0 updated, 0 unchanged" (and frozen, internal and
        skipped rows if any)."""
        text = (
            f"{self.source}, {self.rows} rows: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged"
        )
        if self.frozen_changes:
            text += f", {self.frozen_changes} changed on approved invoices (kept as billed)"
        if self.internal:
            text += (
                f"; {self.internal} of them internal time (no client), filed under client "
                f"{internal_client_name()!r} as not billable"
            )
        if self.internal_skipped:
            text += f"; {self.internal_skipped} rows of internal time (no client) skipped"
        if self.skipped:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.skipped.items()))
            text += f"; skipped, not work: {kinds}"
        if self.created_records is not None and (created := self.created_records.summary()):
            text += f"; {created} from the file"
        return text


@dataclass(frozen=True)
class EntryValues:
    """One entry's values, as the entry stores them."""

    person: Person
    client: Client
    project: Project
    task: str
    date: date
    start_time: time | None
    duration_seconds: int
    notes: str
    tracker_billable: bool
    # The tracker's own billing state (billing semantics 10.2): invoiced there, approved there
    # (None: the tracker does not say).
    tracker_invoiced: bool = False
    tracker_approved: bool | None = None

    @classmethod
    def of(cls, row: ParsedRow, match: Match) -> "EntryValues":
        # Only rows of a file without errors get here, so every value has parsed, and internal
        # rows have had their client and project filed (_file_internal_time).
        assert row.date is not None
        assert row.duration_seconds is not None
        assert match.client is not None and match.project is not None
        if match.internal_project_name:
            billable = False  # internal time is never billed, whatever its Billable cell says
        elif row.tracker_billable is None:
            billable = match.project.is_billable  # no Billable column: the project decides
        else:
            billable = row.tracker_billable
        return cls(
            person=match.person,
            client=match.client,
            project=match.project,
            task=row.task,
            date=row.date,
            start_time=row.start_time,
            duration_seconds=row.duration_seconds,
            notes=row.notes,
            tracker_billable=billable,
            tracker_invoiced=row.tracker_invoiced,
            tracker_approved=row.tracker_approved,
        )

    def identity(self) -> Identity:
        return Identity(
            person_id=self.person.pk,
            date=self.date,
            project_id=self.project.pk,
            task=self.task,
            start_time=self.start_time,
        )

    def content(self) -> dict[str, Any]:
        """JSON-safe, as pending_source_change records it.

        The tracker's billing state is in it only when it differs from the defaults (not
        invoiced, approval unknown): the content hash of every entry stored before these
        fields existed stays the same, so the upgrade alone changes no entry."""
        content: dict[str, Any] = {
            "person_id": self.person.pk,
            "client_id": self.client.pk,
            "project_id": self.project.pk,
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


@dataclass(frozen=True)
class IncomingEntry:
    """An entry as a source reports it, keyed by (source, external_id)."""

    external_id: str
    values: EntryValues
    content: dict[str, Any]
    content_hash: str
    # Set by the API sync only.
    connection_id: int | None = None
    source_updated_at: datetime | None = None

    @classmethod
    def of(
        cls,
        *,
        external_id: str,
        values: EntryValues,
        connection_id: int | None = None,
        source_updated_at: datetime | None = None,
    ) -> "IncomingEntry":
        content = values.content()
        return cls(
            external_id=external_id,
            values=values,
            content=content,
            content_hash=content_hash(content),
            connection_id=connection_id,
            source_updated_at=source_updated_at,
        )


def _apply(entry: TimeEntry, item: IncomingEntry) -> None:
    values = item.values
    entry.person = values.person
    entry.client = values.client
    entry.project = values.project
    entry.task = values.task
    entry.date = values.date
    entry.start_time = values.start_time
    entry.duration_seconds = values.duration_seconds
    entry.notes = values.notes
    entry.normalized_notes = normalize_notes(values.notes)
    entry.tracker_billable = values.tracker_billable
    entry.tracker_invoiced = values.tracker_invoiced
    entry.tracker_approved = values.tracker_approved
    entry.content_hash = item.content_hash
    entry.connection_id = item.connection_id
    entry.source_updated_at = item.source_updated_at
    # Reported by the source, so present there (again, if a sync had noticed it gone).
    entry.deleted_at = None


def _existing_entries(source: str, keys: list[str]) -> dict[str, TimeEntry]:
    """Entries already stored under these keys (deleted ones too: they come back), locked until
    the import commits so that an approval cannot lock an entry between our reading `locked`
    and our update."""
    found: dict[str, TimeEntry] = {}
    for start in range(0, len(keys), BATCH_SIZE):
        chunk = keys[start : start + BATCH_SIZE]
        for entry in (
            TimeEntry.all_objects.select_for_update()
            .filter(source=source, external_id__in=chunk)
            .only(
                "id",
                "external_id",
                "content_hash",
                "locked",
                "pending_source_change",
                "deleted_at",
            )
        ):
            found[entry.external_id] = entry
    return found


@dataclass
class _Plan:
    """What an import does to each row, decided before anything is written."""

    new: list[IncomingEntry] = field(default_factory=list)
    changed: list[tuple[TimeEntry, IncomingEntry]] = field(default_factory=list)
    # Changed at the source while on an approved invoice: recorded beside the entry only.
    frozen: list[tuple[TimeEntry, IncomingEntry]] = field(default_factory=list)
    # Entries whose recorded pending change the source has taken back.
    settled: list[TimeEntry] = field(default_factory=list)
    unchanged: int = 0


def _plan(incoming: Sequence[IncomingEntry], existing: dict[str, TimeEntry]) -> _Plan:
    plan = _Plan()
    for item in incoming:
        entry = existing.get(item.external_id)
        if entry is None:
            plan.new.append(item)
        elif entry.deleted_at is not None and not entry.locked:
            plan.changed.append((entry, item))  # back at the source: restored
        elif entry.content_hash == item.content_hash:
            plan.unchanged += 1
            if entry.pending_source_change is not None:
                plan.settled.append(entry)
        elif entry.locked:
            plan.frozen.append((entry, item))
        else:
            plan.changed.append((entry, item))
    return plan


@dataclass(frozen=True)
class UpsertCounts:
    """What an upsert is about to do, decided before anything is written."""

    rows: int
    created: int
    updated: int
    unchanged: int
    frozen: int


@dataclass(frozen=True)
class UpsertOutcome:
    batch: ImportBatch | None
    created_ids: list[int]
    updated_ids: list[int]
    # On an approved invoice and changed at the source: recorded, not applied.
    frozen_ids: list[int]
    unchanged: int


def _take_import_lock() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK_ID])


def upsert_entries(
    *,
    source: str,
    incoming: Sequence[IncomingEntry],
    batch_for: Callable[[UpsertCounts], ImportBatch | None],
) -> UpsertOutcome:
    """Store entries by (source, external_id): new ones created, changed ones updated, entries
    on an approved invoice left as billed with the source's version recorded beside them.

    Runs inside the caller's transaction (the caller sends `entries_imported` after its commit)
    and takes the import lock for it. `batch_for` is called once, with the counts, before
    anything is written; it returns the ImportBatch that new and changed entries point to."""
    if not connection.in_atomic_block:
        raise RuntimeError("upsert_entries must run inside transaction.atomic()")
    _take_import_lock()
    plan = _plan(incoming, _existing_entries(source, [item.external_id for item in incoming]))
    new, changed, frozen = plan.new, plan.changed, plan.frozen
    batch = batch_for(
        UpsertCounts(
            rows=len(incoming),
            created=len(new),
            updated=len(changed),
            unchanged=plan.unchanged,
            frozen=len(frozen),
        )
    )
    now = timezone.now()

    created_entries = []
    for item in new:
        entry = TimeEntry(source=source, external_id=item.external_id, import_batch=batch)
        _apply(entry, item)
        created_entries.append(entry)
    TimeEntry.objects.bulk_create(created_entries, batch_size=BATCH_SIZE)
    if len(created_entries) >= ANALYZE_AFTER_ROWS:
        # Right after a bulk load PostgreSQL has no statistics of the new rows (autovacuum
        # comes later), and the next queries plan nested loops over them: 100x slower
        # classification was measured. Sampled, so cheap; it blocks no reads or writes.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TimeEntry._meta.db_table}")

    for entry, item in changed:
        _apply(entry, item)
        entry.import_batch = batch
        # The source's values are now the entry's: a change recorded while the entry was
        # on an invoice that has since been voided is no longer pending.
        entry.pending_source_change = None
        # Bulk writes skip auto_now.
        entry.updated_at = now
    update_by_pk(
        [entry for entry, _ in changed],
        CHANGED_FIELDS,
        batch_size=BATCH_SIZE,
    )

    for entry, item in frozen:
        # The entry stays as billed; the source's version waits beside it for review.
        entry.pending_source_change = {
            **item.content,
            # Always recorded (the content leaves the defaults out): applying the change must
            # also take an invoiced or approved mark back when the tracker has.
            "tracker_invoiced": item.values.tracker_invoiced,
            "tracker_approved": item.values.tracker_approved,
            "content_hash": item.content_hash,
            "import_batch_id": batch.pk if batch else None,
        }
    for entry in plan.settled:
        entry.pending_source_change = None
    for entry in [entry for entry, _ in frozen] + plan.settled:
        entry.updated_at = now
    update_by_pk(
        [entry for entry, _ in frozen] + plan.settled,
        ["pending_source_change", "updated_at"],
        batch_size=BATCH_SIZE,
    )
    return UpsertOutcome(
        batch=batch,
        created_ids=[entry.pk for entry in created_entries],
        updated_ids=[entry.pk for entry, _ in changed],
        frozen_ids=[entry.pk for entry, _ in frozen],
        unchanged=plan.unchanged,
    )


def clean_filename(name: str) -> str:
    # Only the file's own name: some browsers send the client's full path.
    return PurePosixPath(name.replace("\\", "/")).name[:255]


def check_file_size(*, name: str, size: int, limits: ImportLimits | None = None) -> None:
    """Refuse a file by its size alone, before anyone reads it (the admin and the command call
    this with the upload's or the file's size; import_file checks again)."""
    reason = file_too_large_reason(size, limits or ImportLimits.from_settings())
    if reason is not None:
        raise ImportRejected(
            [RowError(row=None, column=None, reason=reason, hint=FILE_TOO_LARGE_HINT)],
            name=clean_filename(name),
        )


def import_file(
    *,
    name: str,
    content: bytes | None = None,
    stream: IO[bytes] | None = None,
    user: User | None = None,
    date_order: DateOrder | None = None,
    internal_time: str | None = None,
    progress: Progress | None = None,
    create_missing: bool = False,
    approved: Created | None = None,
) -> ImportResult:
    """Import one Harvest, Clockify or Toggl Track export, CSV or XLSX, given as `content` or
    as a seekable binary `stream` (an upload, an open file): a stream is read in chunks, never
    whole (`streaming`).

    `date_order` ("dmy" or "mdy") settles slash, dotted or dashed dates that the file cannot
    settle itself (all of them with day and month <= 12); without it such a file is read
    month-first (day-first when its dates are dotted). `internal_time` ("import" or "skip";
    default: the setting IMPORT_INTERNAL_TIME) says what becomes of rows without a client.
    `progress(rows_read, rows)` is called as chunks are stored (inside the import's
    transaction: what it writes must go through another connection to be seen before the
    commit). With `create_missing`, the people, clients and projects the file names and the
    firm lacks are created from it (`creating`) rather than refused; with `approved` too, only
    those it lists may be: a file that would create anything else is rolled back and
    ReviewNeeded raised with what it would create (the admin's review, then `approved` is that
    list). Raises ImportRejected, with every problem of the file, when anything is wrong; then
    nothing is stored.
    """
    if date_order is not None and date_order not in DATE_ORDERS:
        raise ValueError(f"date_order must be one of {DATE_ORDERS}, not {date_order!r}")
    if internal_time is None:
        internal_time = getattr(settings, "IMPORT_INTERNAL_TIME", "import")
    if internal_time not in INTERNAL_TIME_CHOICES:
        raise ValueError(
            f"internal_time must be one of {INTERNAL_TIME_CHOICES}, not {internal_time!r}"
        )
    if (content is None) == (stream is None):
        raise ValueError("import_file takes one of content and stream")
    filename = clean_filename(name)
    limits = ImportLimits.from_settings()
    if stream is None:
        assert content is not None
        stream = io.BytesIO(content)
    try:
        surveyed = survey(stream, limits=limits, date_order=date_order)
        return _store(
            stream=stream,
            surveyed=surveyed,
            limits=limits,
            internal_time=internal_time,
            filename=filename,
            user=user,
            progress=progress,
            create_missing=create_missing or approved is not None,
            approved=approved,
        )
    except ImportRejected as rejected:
        raise ImportRejected(rejected.errors, name=filename) from None


def _store(
    *,
    stream: IO[bytes],
    surveyed: Survey,
    limits: ImportLimits,
    internal_time: str,
    filename: str,
    user: User | None,
    progress: Progress | None,
    create_missing: bool,
    approved: Created | None = None,
) -> ImportResult:
    """The file's entries, in one transaction under the import lock, chunk by chunk."""
    source = surveyed.layout.format.source
    with transaction.atomic():
        _take_import_lock()
        batch = ImportBatch.objects.create(
            source=source, filename=filename, sha256=surveyed.sha256, imported_by=user
        )
        stored = FileImporter(
            stream=stream,
            survey=surveyed,
            limits=limits,
            internal_time=internal_time,
            batch_id=batch.pk,
            progress=progress,
            create_missing=create_missing,
        ).run()
        if approved is not None and stored.created and not stored.created.within(approved):
            raise ReviewNeeded(stored.created)  # rolls the import back: nothing is kept
        batch.rows = stored.rows
        batch.created = len(stored.created_ids)
        batch.updated = len(stored.updated_ids)
        batch.unchanged = stored.unchanged
        batch.frozen_changes = len(stored.frozen_ids)
        batch.save(update_fields=["rows", "created", "updated", "unchanged", "frozen_changes"])
        transaction.on_commit(
            partial(
                entries_imported.send,
                sender=ImportBatch,
                batch=batch,
                entry_ids=stored.created_ids + stored.updated_ids,
                frozen_entry_ids=stored.frozen_ids,
            )
        )
    return ImportResult(
        batch=batch,
        source=source,
        rows=batch.rows,
        created=batch.created,
        updated=batch.updated,
        unchanged=batch.unchanged,
        frozen_changes=batch.frozen_changes,
        internal=stored.internal,
        internal_skipped=stored.internal_skipped,
        skipped=stored.skipped,
        created_records=stored.created,
    )


def import_or_review(*, approved: Created | None = None, **options: Any) -> ImportResult:
    """`import_file` for the admin, which creates nothing nobody has reviewed: a file whose
    names the firm knows imports as it always did; one that fails only for names the firm does
    not know raises ReviewNeeded with what it would create (nothing kept); once that list is
    `approved`, the file imports creating it. A file refused for other reasons is refused with
    the errors of the import without creation (naming the unknown names too, with their hints).
    `options` are import_file's."""
    if approved is not None:
        return import_file(**options, approved=approved)
    try:
        return import_file(**options)
    except ImportRejected as refused:
        try:
            # The same file again, creating what it names: rolled back with ReviewNeeded.
            return import_file(**options, approved=Created())
        except ImportRejected:
            raise refused from None
