"""Reviewer corrections and reactions to new source data."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from invoices.classification import classify_entries, entries_to_classify
from invoices.drafting import rebuild_invoice
from invoices.model_tier import enqueue_model_tier
from invoices.models import Category, Classification, Invoice, InvoiceEvent, InvoiceStatus
from timesheets.models import TimeEntry

UNSET = object()
CLASSIFY_CHUNK = 5000


class CorrectionRefused(Exception):
    pass


def correct_entry(
    *,
    entry: TimeEntry,
    user,
    category: Category | None | object = UNSET,
    billable: bool | None | object = UNSET,
    description: str | object = UNSET,
) -> Invoice | None:
    """A reviewer's decision (tier 1: always wins, survives re-runs). Rebuilds the draft the
    entry is on, and returns it."""
    with transaction.atomic():
        # Under the entry's row lock: approval sets `locked` on the same rows, so a correction
        # and an approval take turns and a frozen entry is never corrected.
        if TimeEntry.objects.select_for_update().get(pk=entry.pk).locked:
            raise CorrectionRefused("the entry is on an approved invoice; void the invoice first")
        classification, _ = Classification.objects.select_for_update().get_or_create(entry=entry)
        before = {
            "category": classification.manual_category_id,
            "billable": classification.manual_billable,
            "description": classification.manual_description,
        }
        if category is not UNSET:
            classification.manual_category = category
        if billable is not UNSET:
            classification.manual_billable = billable
        if description is not UNSET:
            classification.manual_description = (description or "").strip()
        classification.manual_by, classification.manual_at = user, timezone.now()
        classification.save()
        classify_entries(entries_to_classify(entry_ids=[entry.id]))
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
        if TimeEntry.objects.select_for_update().get(pk=entry.pk).locked:
            raise CorrectionRefused("the entry is on an approved invoice; void the invoice first")
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
