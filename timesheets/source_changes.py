"""Source changes recorded while an entry was frozen on an approved invoice, applied when the
invoice is voided (billing semantics section 8: "voiding releases its entries after applying the
source changes recorded while it was frozen").

An import or a sync that finds a locked entry changed at its source keeps the entry as billed
and records the source's version in `TimeEntry.pending_source_change`: the entry's content
(`EntryValues.content()` plus `content_hash`), or `{"deleted": true}` for an entry the tracker
no longer lists. `apply_pending_source_changes` makes those versions the entry's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from timesheets.errors import TimesheetError
from timesheets.models import TimeEntry
from timesheets.notes import normalize_notes

# The recorded keys and the entry fields they set.
_CONTENT = {
    "person_id": "person_id",
    "client_id": "client_id",
    "project_id": "project_id",
    "task": "task",
    "duration_seconds": "duration_seconds",
    "notes": "notes",
    "tracker_billable": "tracker_billable",
    "tracker_invoiced": "tracker_invoiced",
    "tracker_approved": "tracker_approved",
    "content_hash": "content_hash",
}


class SourceChangeError(TimesheetError, ValueError):
    """A recorded source change cannot be applied; the message names the entry and the field."""


@dataclass
class AppliedChanges:
    edited: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return self.edited + self.deleted


def apply_pending_source_changes(entry_ids: Iterable[int]) -> AppliedChanges:
    """Apply the recorded source version of each of these entries (edits take effect, deletions
    delete). Runs in the caller's transaction, which must hold the entries' row locks (the void
    does); an entry without a recorded change is left as it is."""
    if not connection.in_atomic_block:
        raise RuntimeError("apply_pending_source_changes must run inside transaction.atomic()")
    applied = AppliedChanges()
    now = timezone.now()
    changed: list[TimeEntry] = []
    entries = TimeEntry.all_objects.select_for_update().filter(
        id__in=list(entry_ids), pending_source_change__isnull=False
    )
    for entry in entries.order_by("id"):
        change = entry.pending_source_change
        if change.get("deleted"):
            entry.deleted_at = now
            applied.deleted.append(entry.pk)
        else:
            _apply_content(entry, change)
            applied.edited.append(entry.pk)
        entry.pending_source_change = None
        entry.updated_at = now
        changed.append(entry)
    if changed:
        TimeEntry.all_objects.bulk_update(
            changed,
            [
                *_CONTENT.values(),
                "date",
                "start_time",
                "normalized_notes",
                "deleted_at",
                "pending_source_change",
                "updated_at",
            ],
        )
    return applied


def _apply_content(entry: TimeEntry, change: dict) -> None:
    for key, attribute in _CONTENT.items():
        if key in change:
            setattr(entry, attribute, change[key])
    try:
        if "date" in change:
            entry.date = dt.date.fromisoformat(change["date"])
        if "start_time" in change:
            start = change["start_time"]
            entry.start_time = dt.time.fromisoformat(start) if start else None
    except (TypeError, ValueError) as exc:
        raise SourceChangeError(
            f"entry {entry.key}: the recorded source change has an unreadable date or time "
            f"({exc}); correct it in the admin before voiding"
        ) from exc
    entry.normalized_notes = normalize_notes(entry.notes)
    entry.deleted_at = None
