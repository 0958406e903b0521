"""Reviewer corrections and reactions to new source data.

A reviewer's decision is memory at once (billing semantics 2.3): `correct_entry` (one entry)
and `decide_note` (every pending entry of a client with the same note, from the review queue)
reclassify the client's entries that follow it in the decision's own transaction, where the
database triggers mark their drafts stale (`invoices.guards`). `correct_entry` then rebuilds
the entry's draft; `decide_note` leaves rebuilding to `rebuild_stale_drafts`, once per batch
of decisions, so a decision answers at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from invoices.classification import (
    classify_entries,
    entries_to_classify,
    reclassify_after_decision,
)
from invoices.drafting import DraftSummary, Period, draft_invoices, rebuild_invoice
from invoices.errors import BillingError
from invoices.model_tier import enqueue_model_tier
from invoices.models import (
    Category,
    Classification,
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceStatus,
)
from timesheets.models import Client, TimeEntry

UNSET = object()
CLASSIFY_CHUNK = 5000


class CorrectionRefused(BillingError):
    """The correction cannot be made; the message says why, for the reviewer."""


def _lock_for_review(entry: TimeEntry) -> TimeEntry:
    """The entry under its row lock, if a reviewer may still decide it."""
    current = TimeEntry.all_objects.select_for_update().get(pk=entry.pk)
    if current.locked:
        raise CorrectionRefused("the entry is on an approved invoice; void the invoice first")
    if current.deleted_at is not None:
        raise CorrectionRefused(
            "the entry was deleted at the source; rebuild the draft, which drops it"
        )
    return current


def correct_entry(
    *,
    entry: TimeEntry,
    user,
    category: Category | None | object = UNSET,
    billable: bool | None | object = UNSET,
    description: str | object = UNSET,
) -> Invoice | None:
    """A reviewer's decision (tier 1: always wins, survives re-runs), and memory at once for
    the client's entries with the same note. Rebuilds the draft the entry is on (other drafts
    that the note's twins are on are left marked stale), and returns it."""
    with transaction.atomic():
        # Under the entry's row lock: approval sets `locked` on the same rows, so a correction
        # and an approval take turns and a frozen entry is never corrected.
        _lock_for_review(entry)
        classification, _ = Classification.objects.select_for_update().get_or_create(entry=entry)
        before = {
            "category": classification.manual_category_id,
            "billable": classification.manual_billable,
            "description": classification.manual_description,
        }
        if category is not UNSET:
            classification.manual_category = cast("Category | None", category)
        if billable is not UNSET:
            classification.manual_billable = cast("bool | None", billable)
        if description is not UNSET:
            classification.manual_description = (cast("str | None", description) or "").strip()
        classification.manual_by, classification.manual_at = user, timezone.now()
        classification.save()
        # The decision is memory at once: the client's entries with this note follow it.
        reclassify_after_decision(
            client_id=entry.client_id,
            normalized_notes=[entry.normalized_notes],
            entry_ids=[entry.id],
        )
        draft = Invoice.objects.filter(
            entry_links__entry=entry, entry_links__is_live=True, status=InvoiceStatus.DRAFT
        ).first()
        if draft is not None:
            InvoiceEvent.objects.create(
                invoice=draft,
                action="corrected",
                actor=user,
                detail={
                    "entry": entry.key,
                    "before": before,
                    "after": {
                        "category": classification.manual_category_id,
                        "billable": classification.manual_billable,
                        "description": classification.manual_description,
                    },
                },
            )
    return rebuild_invoice(draft, user=user) if draft is not None else None


def on_entries_imported(*, entry_ids: Iterable[int], frozen_entry_ids: Iterable[int]) -> None:
    """After an import commits: classify what changed. The import's own transaction already
    marked the drafts holding changed entries stale and flagged approved invoices whose source
    changed (database triggers, `invoices.guards`), so a crash or a queue backlog before this
    runs can never let a stale draft be approved."""
    entry_ids = sorted(entry_ids)
    # Chunked: one `id IN (...)` of a whole 100k-entry import would be re-sent by every
    # chunk query of the classification run.
    for start in range(0, len(entry_ids), CLASSIFY_CHUNK):
        classify_entries(entries_to_classify(entry_ids=entry_ids[start : start + CLASSIFY_CHUNK]))
    if entry_ids:
        # The language-model tier, for what the rules and memory left undecided: after
        # commit, in the django-q2 cluster (a no-op without ANTHROPIC_API_KEY).
        enqueue_model_tier(entry_ids=entry_ids, trigger="import")


def release_hold(*, entry: TimeEntry, user) -> Invoice | None:
    """A reviewer releases an entry that the tracker calls invoiced or unapproved (billing
    semantics 10.2): it bills on its draft (rebuilt), or on the next one as late time. The
    release and its draft's stale mark commit together."""
    with transaction.atomic():
        _lock_for_review(entry)
        classification, _ = Classification.objects.select_for_update().get_or_create(entry=entry)
        classification.hold_released_by, classification.hold_released_at = user, timezone.now()
        classification.save(update_fields=["hold_released_by", "hold_released_at"])
        draft = Invoice.objects.filter(
            entry_links__entry=entry, entry_links__is_live=True, status=InvoiceStatus.DRAFT
        ).first()
        if draft is not None:
            InvoiceEvent.objects.create(
                invoice=draft, action="hold released", actor=user, detail={"entry": entry.key}
            )
    return rebuild_invoice(draft, user=user) if draft is not None else None


@dataclass
class NoteDecision:
    """What `decide_note` did: the entries it decided, how many of the client's entries the
    new memory reclassified, and the client's drafts now waiting for a rebuild."""

    client: Client
    entry_ids: list[int]
    reclassified: int = 0
    stale_drafts: list[Invoice] = field(default_factory=list)


def pending_entries(*, client_ids: Iterable[int] | None = None, period: Period | None = None):
    """Entries waiting for a reviewer: unlocked, not decided (or never classified). With a
    period: dated in it, or on one of its drafts (late time, section 10.1)."""
    qs = TimeEntry.objects.filter(locked=False).filter(
        Q(classification__isnull=True) | Q(classification__needs_review=True)
    )
    if client_ids is not None:
        qs = qs.filter(client_id__in=list(client_ids))
    if period is not None:
        qs = qs.filter(
            Q(date__gte=period.start, date__lte=period.end)
            | Q(
                invoice_links__is_live=True,
                invoice_links__invoice__status=InvoiceStatus.DRAFT,
                invoice_links__invoice__period_start=period.start,
                invoice_links__invoice__period_end=period.end,
            )
        )
    return qs


def decide_note(
    *,
    client: Client,
    normalized_notes: Iterable[str],
    period: Period | None = None,
    user,
    category: Category | None,
    billable: bool | None = None,
    description: str = "",
) -> NoteDecision:
    """One reviewer decision for a (client, note) group of the review queue: every pending
    entry of `client` with one of `normalized_notes` (of `period`, if given) gets it as its
    own (tier 1, as `correct_entry` records it), and the client's other entries follow by
    memory, in one transaction. Nothing is rebuilt: the drafts are marked stale by the
    database in this transaction, and `rebuild_stale_drafts` rebuilds them (approval refuses
    a stale draft meanwhile)."""
    notes = sorted(set(normalized_notes))
    if not notes:
        raise CorrectionRefused("no note given: say which note the decision is for")
    if category is None and billable is None:
        raise CorrectionRefused("choose a category, or mark the entries not billable")
    with transaction.atomic():
        group = pending_entries(client_ids=[client.pk], period=period).filter(
            normalized_notes__in=notes
        )
        ids = _lock_unfrozen(group)
        if not ids:
            raise CorrectionRefused(
                f"no pending entry of {client.name} has that note any more; nothing was decided"
            )
        reclassified = _record_decision(
            ids, user=user, category=category, billable=billable, description=description
        )
        stale = list(
            Invoice.objects.filter(
                client=client, status=InvoiceStatus.DRAFT, flags__contains=[Flag.STALE]
            ).order_by("period_start", "id")
        )
    return NoteDecision(client=client, entry_ids=ids, reclassified=reclassified, stale_drafts=stale)


def decide_entries(
    *,
    entry_ids: Iterable[int],
    user,
    category: Category | None,
    billable: bool | None = None,
    description: str = "",
) -> list[int]:
    """One reviewer decision for chosen entries (the Classifications list's bulk action):
    recorded on each as `decide_note` does, with their clients' twins following by memory;
    entries frozen on an approved invoice are left out. Returns the ids decided."""
    if category is None and billable is None:
        raise CorrectionRefused("choose a category, or mark the entries not billable")
    with transaction.atomic():
        ids = _lock_unfrozen(TimeEntry.objects.filter(id__in=list(entry_ids)))
        if not ids:
            raise CorrectionRefused(
                "every chosen entry is on an approved invoice; void the invoice first"
            )
        _record_decision(
            ids, user=user, category=category, billable=billable, description=description
        )
    return ids


def _lock_unfrozen(entries) -> list[int]:
    # Locked like `correct_entry` locks its entry: an approval (which locks entries) and a
    # decision take turns, and an entry frozen meanwhile is left out.
    return list(
        TimeEntry.objects.select_for_update()
        .filter(id__in=entries.values("id"), locked=False)
        .order_by("id")
        .values_list("id", flat=True)
    )


def _record_decision(
    ids: list[int], *, user, category: Category | None, billable: bool | None, description: str
) -> int:
    """The decision on each entry of `ids` (locked by the caller), the memory it makes
    followed by each client's entries, and a "decided" event on each draft that holds them.
    Returns how many entries were reclassified."""
    wording = (description or "").strip()
    Classification.objects.bulk_create(
        [Classification(entry_id=pk) for pk in ids], ignore_conflicts=True
    )
    Classification.objects.filter(entry_id__in=ids).update(
        manual_category=category,
        manual_billable=billable,
        manual_description=wording,
        manual_by=user,
        manual_at=timezone.now(),
    )
    rows = TimeEntry.objects.filter(id__in=ids).values_list(
        "id", "source", "external_id", "client_id", "normalized_notes"
    )
    keys: dict[int, str] = {}
    notes_by_client: dict[int, set[str]] = defaultdict(set)
    for pk, source, external_id, client_id, normalized in rows:
        keys[pk] = f"{source}:{external_id}"
        notes_by_client[client_id].add(normalized)
    reclassified = 0
    for client_id, notes in sorted(notes_by_client.items()):
        reclassified += reclassify_after_decision(
            client_id=client_id, normalized_notes=sorted(notes), entry_ids=ids
        ).entries
    after = {
        "category": category.pk if category else None,
        "billable": billable,
        "description": wording,
    }
    on_drafts: dict[int, list[str]] = defaultdict(list)
    for invoice_id, entry_id in InvoiceEntry.objects.filter(
        entry_id__in=ids, is_live=True, invoice__status=InvoiceStatus.DRAFT
    ).values_list("invoice_id", "entry_id"):
        on_drafts[invoice_id].append(keys[entry_id])
    InvoiceEvent.objects.bulk_create(
        [
            InvoiceEvent(
                invoice_id=invoice_id,
                action="decided",
                actor=user,
                detail={"entries": sorted(entry_keys), "after": after},
            )
            for invoice_id, entry_keys in sorted(on_drafts.items())
        ]
    )
    return reclassified


def stale_drafts(*, period: Period | None = None):
    """Drafts marked stale (something they rest on changed since they were built)."""
    qs = Invoice.objects.filter(status=InvoiceStatus.DRAFT, flags__contains=[Flag.STALE])
    if period is not None:
        qs = qs.filter(period_start=period.start, period_end=period.end)
    return qs


def rebuild_stale_drafts(*, period: Period | None = None, user=None) -> list[DraftSummary]:
    """Rebuild every stale draft (of `period`, if given), one drafting run per period for
    the clients that have one: the batch end of a series of review-queue decisions."""
    by_period: dict[Period, set[int]] = {}
    for start, end, client_id in stale_drafts(period=period).values_list(
        "period_start", "period_end", "client_id"
    ):
        by_period.setdefault(Period(start, end), set()).add(client_id)
    return [
        draft_invoices(period=p, client_ids=sorted(ids), user=user)
        for p, ids in sorted(by_period.items(), key=lambda item: item[0].start)
    ]
