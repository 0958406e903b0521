"""Deletions: an entry the tracker no longer lists is marked deleted (`deleted_at`), or, on an
approved invoice, kept as billed with the deletion recorded beside it. Noticed from a complete
listing of a window of days (absence means deleted), or reported by the tracker itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from timesheets.importing.service import BATCH_SIZE
from timesheets.models import HeldEntry, SyncRun, TimeEntry, TrackerConnection
from timesheets.sync.remote import Listing


class RunRecorder(Protocol):
    """What noticing deletions needs of the run writing the pages (`storing.PageWriter` is
    one): declared here so that storing, which marks entries gone, depends on this module and
    not the other way round."""

    conn: TrackerConnection
    run: SyncRun

    def first_seen(self, frozen_ids: list[int]) -> list[int]: ...

    def count(
        self, counts: dict[str, int], *, progress: str, problems: Sequence[str] = ()
    ) -> None: ...

    def announce(self, entry_ids: list[int], frozen_ids: list[int]) -> None: ...


def mark_gone(
    conn: TrackerConnection, run: SyncRun, external_ids: Sequence[str]
) -> tuple[list[int], list[int]]:
    """Entries the tracker no longer has: marked deleted, or, on an approved invoice, kept
    as billed with the deletion recorded beside them. (ids deleted, ids frozen)"""
    now = timezone.now()
    deleted: list[int] = []
    frozen: list[int] = []
    for start in range(0, len(external_ids), BATCH_SIZE):
        chunk = list(external_ids[start : start + BATCH_SIZE])
        for entry_id, locked in (
            TimeEntry.objects.select_for_update()
            .filter(source=conn.kind, external_id__in=chunk)
            .values_list("id", "locked")
        ):
            (frozen if locked else deleted).append(entry_id)
    for start in range(0, len(deleted), BATCH_SIZE):
        TimeEntry.objects.filter(pk__in=deleted[start : start + BATCH_SIZE]).update(
            deleted_at=now, updated_at=now
        )
    for start in range(0, len(frozen), BATCH_SIZE):
        TimeEntry.objects.filter(pk__in=frozen[start : start + BATCH_SIZE]).update(
            pending_source_change={
                "deleted": True,
                "noticed_at": now.isoformat(),
                "sync_run_id": run.pk,
            },
            updated_at=now,
        )
    return deleted, frozen


def notice_deletions(writer: RunRecorder, listing: Listing, seen: set[str]) -> None:
    """Entries of the connection dated in the listing's window (of its users, when it names
    them) that the complete listing did not show: marked gone; waiting ones are dropped."""
    assert listing.window is not None
    first, last = listing.window
    stored = TimeEntry.objects.filter(connection=writer.conn, date__gte=first, date__lte=last)
    waiting = HeldEntry.objects.filter(connection=writer.conn, date__gte=first, date__lte=last)
    if listing.users is not None:
        stored = stored.filter(
            person__tracker_users__connection=writer.conn,
            person__tracker_users__external_id__in=sorted(listing.users),
        ).distinct()
        waiting = waiting.filter(external_person__external_id__in=sorted(listing.users))
    missing = [key for key in stored.values_list("external_id", flat=True) if key not in seen]
    gone_waiting = [pk for pk, key in waiting.values_list("id", "external_id") if key not in seen]
    if gone_waiting:
        HeldEntry.objects.filter(pk__in=gone_waiting).delete()
    if not missing:
        return
    with transaction.atomic():
        deleted, frozen = mark_gone(writer.conn, writer.run, missing)
        frozen = writer.first_seen(frozen)
        writer.count(
            {"deleted": len(deleted), "frozen": len(frozen)},
            progress=f"{listing.label}: {len(missing)} no longer at the source",
        )
        writer.announce(deleted, frozen)
