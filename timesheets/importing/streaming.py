"""The import of one file, streamed: never the whole file nor all its rows in memory.

Two passes over the file (a seekable binary stream):

1. `survey` reads it through once without keeping anything: its size and SHA-256, what it is,
   every file-level problem (not UTF-8, not CSV, too many rows, an unrecognised header, no
   entries), the number of rows (a background import's total), and the date order of a file
   that must tell it itself (sniffed from the dates of the rows that are parsed). A file with
   a problem of this kind is refused here, before anything is written.
2. `FileImporter` reads it again in chunks of IMPORT_CHUNK_ROWS rows: each chunk is parsed
   (`rows.RowReader`), matched (`matching.Matcher`), keyed and written (`entry_writes`) before
   the next is read, inside the caller's one transaction. A row with an error stops the
   writing (the rest is only checked, to report every error) and the import is refused whole,
   its transaction rolled back: nothing of a refused file stays.

What a file needs kept across chunks is small and bounded by what it names, not by its rows:
the people, clients and projects seen, each distinct cell text's parsed value (bounded), and
one counter per entry identity for the occurrence numbers of the keys (`keys`), which is the
one thing that grows with the rows (about 150 bytes an entry), with the ids for the signal.
"""

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time
from functools import lru_cache
from typing import IO

from django.conf import settings
from django.db import connection
from django.utils import timezone

from timesheets.importing.creating import Created, MissingCreator
from timesheets.importing.entry_writes import ChunkOutcome, RowEntry, write_chunk
from timesheets.importing.errors import ImportRejected, RowError
from timesheets.importing.formats import Layout, detect_layout
from timesheets.importing.internal import file_internal_time
from timesheets.importing.keys import content_hash_of, external_id_of, identity_text, task_key
from timesheets.importing.limits import FILE_TOO_LARGE_HINT, ImportLimits, file_too_large_reason
from timesheets.importing.matching import Match, Matcher, name_key
from timesheets.importing.reading import READ_BYTES, SourceRow, check_kind, empty_file, iter_records
from timesheets.importing.rows import ParsedRow, RowReader, parse_row, screen_row
from timesheets.importing.values import ConflictingDateOrder, DateOrder, DateOrderSniffer
from timesheets.models import Project, TimeEntry
from timesheets.notes import normalize_notes

DEFAULT_CHUNK_ROWS = 5000
# An import that creates at least this many entries refreshes the table's planner statistics.
ANALYZE_AFTER_ROWS = 5000
# A refusal lists at most this many errors (and says how many there are): a file of a million
# bad rows would otherwise fill the worker's memory and the page with them.
MAX_LISTED_ERRORS = 1000

Progress = Callable[[int, int], None]  # (rows read so far, rows of the file)


def chunk_rows() -> int:
    return max(1, getattr(settings, "IMPORT_CHUNK_ROWS", DEFAULT_CHUNK_ROWS))


# Notes repeat ("Standup", "Code review"); normalizing one costs more than the rest of its row.
normalized_notes = lru_cache(maxsize=20_000)(normalize_notes)


@dataclass(frozen=True)
class Survey:
    """What the first pass learnt of a file."""

    kind: str
    layout: Layout
    rows: int  # non-blank rows after the header
    date_order: DateOrder | None  # None: the file proved both orders (`order_error`)
    order_error: RowError | None
    sha256: str
    size: int


def _size(stream: IO[bytes]) -> int:
    stream.seek(0, 2)
    return stream.tell()


def _sha256(stream: IO[bytes]) -> str:
    stream.seek(0)
    digest = hashlib.sha256()
    while block := stream.read(READ_BYTES):
        digest.update(block)
    return digest.hexdigest()


def _no_entries() -> ImportRejected:
    return ImportRejected(
        [
            RowError(
                row=None,
                column=None,
                reason="no entries: the file has only a header row",
                hint="choose a date range with entries and export the report again",
            )
        ]
    )


class _OrderSniffer:
    """The date order of the rows that are parsed, and the rows that prove a conflict."""

    def __init__(self, layout: Layout, limits: ImportLimits) -> None:
        self.layout = layout
        self.reader = RowReader(layout, order="mdy", limits=limits)  # only screens rows
        self.position = layout.positions.get(layout.format.date_field)
        self.sniffer = DateOrderSniffer()
        self.lines: dict[str, int] = {}
        self.error: RowError | None = None

    def feed(self, row: SourceRow) -> None:
        if self.error is not None or not self.reader.is_parsed(row):
            return
        text = row.cells[self.position] if self.position is not None else ""
        try:
            self.sniffer.feed(text)
        except ConflictingDateOrder as conflict:
            day_line = (
                self.lines[conflict.day_first] if conflict.day_first in self.lines else row.line
            )
            month_line = self.lines.get(conflict.month_first, row.line)
            self.error = RowError(
                row=max(day_line, month_line),
                column=self.layout.column(self.layout.format.date_field),
                reason=f"dates are both day-first ({conflict.day_first!r}, row {day_line}) and "
                f"month-first ({conflict.month_first!r}, row {month_line})",
                hint="export the report again with one date format",
            )
            return
        for proved in (self.sniffer.day_first, self.sniffer.month_first):
            if proved is not None and proved not in self.lines:
                self.lines[proved] = row.line

    def order(self) -> DateOrder | None:
        return None if self.error is not None else self.sniffer.order()


def survey(stream: IO[bytes], *, limits: ImportLimits, date_order: DateOrder | None) -> Survey:
    """The first pass (module docstring). Raises ImportRejected for a problem of the file."""
    size = _size(stream)
    if (reason := file_too_large_reason(size, limits)) is not None:
        raise ImportRejected(
            [RowError(row=None, column=None, reason=reason, hint=FILE_TOO_LARGE_HINT)]
        )
    kind = check_kind(stream)
    records = iter_records(stream, kind=kind, limits=limits)
    header = next(records, None)
    if header is None:
        raise empty_file()
    # A header problem is reported only once the whole file has read well: reading problems
    # come first, as when the file was read whole before its header was looked at.
    layout: Layout | None = None
    layout_error: ImportRejected | None = None
    try:
        layout = detect_layout(header.cells, header_line=header.line)
    except ImportRejected as rejected:
        layout_error = rejected
    sniffer = _OrderSniffer(layout, limits) if layout is not None and date_order is None else None
    rows = 0
    for row in records:
        rows += 1
        if sniffer is not None:
            sniffer.feed(row)
    if layout_error is not None:
        raise layout_error
    assert layout is not None
    if not rows:
        raise _no_entries()
    return Survey(
        kind=kind,
        layout=layout,
        rows=rows,
        date_order=sniffer.order() if sniffer is not None else date_order,
        order_error=sniffer.error if sniffer is not None else None,
        sha256=_sha256(stream),
        size=size,
    )


@dataclass
class Stored:
    """What the second pass stored."""

    rows: int = 0  # entries the file brought (not the skipped rows)
    created_ids: list[int] = field(default_factory=list)
    updated_ids: list[int] = field(default_factory=list)
    frozen_ids: list[int] = field(default_factory=list)
    unchanged: int = 0
    internal: int = 0
    internal_skipped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    # With create_missing: the people, clients and projects the file created.
    created: Created | None = None

    def add(self, outcome: ChunkOutcome) -> None:
        self.created_ids += outcome.created_ids
        self.updated_ids += outcome.updated_ids
        self.frozen_ids += outcome.frozen_ids
        self.unchanged += outcome.unchanged


class _Errors:
    """A file's errors in file order, the first MAX_LISTED_ERRORS of them kept."""

    def __init__(self) -> None:
        self.listed: list[RowError] = []
        self.count = 0

    def extend(self, errors: list[RowError]) -> None:
        self.count += len(errors)
        room = MAX_LISTED_ERRORS - len(self.listed)
        if room > 0:
            # Stable: within a row, the order of detection (parse, then match) is kept.
            self.listed += sorted(errors, key=lambda error: error.row or 0)[:room]

    def rejection(self) -> ImportRejected:
        errors = list(self.listed)
        if self.count > len(errors):
            errors.append(
                RowError(
                    row=None,
                    column=None,
                    reason=f"the file has {self.count:,} errors; the first {len(errors):,} are "
                    "listed",
                    hint="correct these and import the file again to see the rest",
                )
            )
        return ImportRejected(errors)


class FileImporter:
    """The second pass (module docstring): call `run` inside the import's transaction, under
    the import lock, with the ImportBatch the entries are to point to."""

    def __init__(
        self,
        *,
        stream: IO[bytes],
        survey: Survey,
        limits: ImportLimits,
        internal_time: str,
        batch_id: int,
        progress: Progress | None = None,
        create_missing: bool = False,
    ) -> None:
        self.stream = stream
        self.survey = survey
        self.limits = limits
        self.layout = survey.layout
        self.skip_internal = internal_time == "skip"
        self.batch_id = batch_id
        self.progress = progress
        self.source = survey.layout.format.source
        self.start_in_key = survey.layout.format.start_time_is_identity
        self.reader = RowReader(self.layout, order=survey.date_order, limits=limits)
        self.creator = MissingCreator(self.layout) if create_missing else None
        self.matcher = Matcher(
            self.layout, complete=self.creator.create if self.creator is not None else None
        )
        self.errors = _Errors()
        self.stored = Stored()
        self.occurrences: Counter[str] = Counter()
        self.internal_projects: dict[str, Project] = {}
        self.now = timezone.now()
        # Memo of repeated values' text forms.
        self._iso_dates: dict[date, str] = {}
        self._iso_times: dict[time, str] = {}
        self._task_keys: dict[str, str] = {}

    def run(self) -> Stored:
        """Raises ImportRejected with every error (the caller's transaction then rolls back)."""
        size = chunk_rows()
        records = iter_records(self.stream, kind=self.survey.kind, limits=self.limits)
        next(records)  # the header, read by the survey
        chunk: list[tuple[ParsedRow, bool]] = []
        chunk_errors: list[RowError] = []
        read = 0
        for row in records:
            read += 1
            before = len(chunk_errors)
            parsed = self._read(row, chunk_errors)
            if isinstance(parsed, str):
                self.stored.skipped[parsed] = self.stored.skipped.get(parsed, 0) + 1
            elif parsed is not None:
                chunk.append((parsed, len(chunk_errors) == before))
            if read % size == 0:
                self._flush(chunk, chunk_errors)
                chunk, chunk_errors = [], []
                self._report(read)
        self._flush(chunk, chunk_errors)
        if self.errors.count:
            raise self.errors.rejection()
        if self.creator is not None:
            self.stored.created = self.creator.created
        self._report(read)
        if len(self.stored.created_ids) >= ANALYZE_AFTER_ROWS:
            # Right after a bulk load PostgreSQL has no statistics of the new rows (autovacuum
            # comes later), and the next queries plan nested loops over them: 100x slower
            # classification was measured. Sampled, so cheap; it blocks no reads or writes.
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {TimeEntry._meta.db_table}")
        return self.stored

    def _report(self, read: int) -> None:
        if self.progress is not None:
            self.progress(read, self.survey.rows)

    def _read(self, row: SourceRow, errors: list[RowError]) -> ParsedRow | str | None:
        conflict = self.survey.order_error
        if conflict is None or row.line != conflict.row:
            return self.reader.read(row, errors)
        # The row that proved both date orders: its error goes after the row's own screening
        # errors and before its cells' errors, where the whole-file parser put it.
        whole, kind = screen_row(self.layout, row, self.limits, errors)
        errors.append(conflict)
        if kind:
            return kind
        return parse_row(self.layout, row, None, errors) if whole else None

    def _flush(self, chunk: list[tuple[ParsedRow, bool]], errors: list[RowError]) -> None:
        """Match a chunk's rows and, while the file has no error, write their entries."""
        self.matcher.prepare([row for row, _ in chunk])
        matched: list[tuple[ParsedRow, Match]] = []
        for row, parsed_well in chunk:
            match = self.matcher.match(row, errors)
            if match is not None and parsed_well:
                matched.append((row, match))
        self.errors.extend(errors)
        if self.errors.count:
            return  # refused: the rest is only checked
        if self.skip_internal:
            kept = [(row, match) for row, match in matched if not match.internal]
            self.stored.internal_skipped += len(matched) - len(kept)
            matched = kept
        self._file_internal(matched)
        entries = [self._entry(row, match) for row, match in matched]
        self.stored.rows += len(entries)
        self.stored.add(
            write_chunk(source=self.source, entries=entries, batch_id=self.batch_id, now=self.now)
        )

    def _file_internal(self, matched: list[tuple[ParsedRow, Match]]) -> None:
        names = {
            match.internal_project_name
            for _, match in matched
            if match.internal
            and name_key(match.internal_project_name) not in self.internal_projects
        }
        if names:
            self.internal_projects.update(file_internal_time(sorted(names)))

    def _entry(self, row: ParsedRow, match: Match) -> RowEntry:
        # Only rows without errors get here, so every value has parsed.
        assert row.date is not None and row.duration_seconds is not None
        if match.internal:
            self.stored.internal += 1
            project = self.internal_projects[name_key(match.internal_project_name)]
            client = project.client
            billable = False  # internal time is never billed, whatever its Billable cell says
        else:
            assert match.client is not None and match.project is not None
            project, client = match.project, match.client
            # No Billable column: the project decides.
            billable = project.is_billable if row.tracker_billable is None else row.tracker_billable
        person_id, project_id = match.person.pk, project.pk
        date_iso = self._iso_dates.get(row.date) or self._iso_dates.setdefault(
            row.date, row.date.isoformat()
        )
        start = row.start_time
        start_iso = None
        if start is not None:
            start_iso = self._iso_times.get(start) or self._iso_times.setdefault(
                start, start.isoformat()
            )
        task = row.task
        key_task = self._task_keys.get(task) or self._task_keys.setdefault(task, task_key(task))
        identity = identity_text(
            source=self.source,
            person_id=person_id,
            date_iso=date_iso,
            project_id=project_id,
            task=key_task,
            start_iso=(start_iso or "") if self.start_in_key else "",
        )
        occurrence = self.occurrences[identity]
        self.occurrences[identity] = occurrence + 1
        return RowEntry(
            external_id=external_id_of(identity, occurrence),
            content_hash=content_hash_of(
                client_id=client.pk,
                date_iso=date_iso,
                duration_seconds=row.duration_seconds,
                notes=row.notes,
                person_id=person_id,
                project_id=project_id,
                start_iso=start_iso,
                task=task,
                tracker_approved=row.tracker_approved,
                tracker_billable=billable,
                tracker_invoiced=row.tracker_invoiced,
            ),
            person_id=person_id,
            client_id=client.pk,
            project_id=project_id,
            task=task,
            date=row.date,
            start_time=start,
            duration_seconds=row.duration_seconds,
            notes=row.notes,
            normalized_notes=normalized_notes(row.notes),
            tracker_billable=billable,
            tracker_invoiced=row.tracker_invoiced,
            tracker_approved=row.tracker_approved,
        )
