"""Unbilled time: every entry that should bill but is on no live invoice, with the reason
(billing semantics 10.1 and 10.2). Nothing billable is ever on no invoice without showing here:
the month overview and `draft_invoices` list it by client and age.

Reasons, in the order they are decided:
- "held: invoiced in Harvest" / "held: not approved in Harvest": the tracker's own state holds
  it until a reviewer releases it;
- "late time from 2026-10: goes on the next draft": its period's invoice is already approved;
- "not drafted yet": its period has no invoice for its client yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from django.db.models import Q, Subquery
from django.utils import timezone

from invoices.core.rounding import round_quantity
from invoices.drafting import approved_invoices_covering_entry, hold_reason
from timesheets.models import TimeEntry

# Age buckets of unbilled time, in days since the entry's date (as accounts receivable ages).
AGE_BUCKETS = ((30, "0-30 days"), (60, "31-60 days"), (90, "61-90 days"), (None, "over 90 days"))


def unbilled_entries(*, client_ids: Iterable[int] | None = None) -> list[TimeEntry]:
    """Entries on no live invoice that bill (or would, but for a hold), oldest first; each has
    `unbilled_reason` and `age_days`."""
    approved_period = approved_invoices_covering_entry()
    entries = (
        TimeEntry.objects.exclude(invoice_links__is_live=True)
        .filter(
            Q(classification__billable=True, classification__needs_review=False)
            | Q(tracker_invoiced=True)
            | Q(tracker_approved=False)
        )
        .annotate(
            approved_period_start=Subquery(
                approved_period.order_by("period_start").values("period_start")[:1]
            )
        )
        .select_related("client__policy", "person", "project", "classification")
        .order_by("date", "id")
    )
    if client_ids is not None:
        entries = entries.filter(client_id__in=list(client_ids))
    today = timezone.localdate()
    found = []
    for entry in entries:
        classification = getattr(entry, "classification", None)
        held = hold_reason(entry, classification, getattr(entry.client, "policy", None))
        if held:
            entry.unbilled_reason = f"held: {held}"
        elif classification is None or not classification.billable:
            continue  # held-looking, but it bills nothing here
        elif entry.approved_period_start is not None:
            entry.unbilled_reason = (
                f"late time from {entry.approved_period_start:%Y-%m}: goes on the next draft"
            )
        else:
            entry.unbilled_reason = "not drafted yet"
        entry.age_days = (today - entry.date).days
        found.append(entry)
    return found


@dataclass
class UnbilledClient:
    client: str
    entries: int = 0
    seconds: int = 0
    oldest: dt.date | None = None
    by_age: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def hours(self) -> Decimal:
        return round_quantity(Fraction(self.seconds, 3600))


def unbilled_by_client(entries: Iterable[TimeEntry]) -> list[UnbilledClient]:
    """`unbilled_entries()` summed per client: entries, hours, oldest date, counts by age bucket
    and by reason (the reason without its period, e.g. "late time")."""
    rows: dict[str, UnbilledClient] = {}
    for entry in entries:
        row = rows.setdefault(entry.client.name, UnbilledClient(client=entry.client.name))
        row.entries += 1
        row.seconds += entry.duration_seconds
        row.oldest = min(row.oldest or entry.date, entry.date)
        bucket = next(
            label for limit, label in AGE_BUCKETS if limit is None or entry.age_days <= limit
        )
        row.by_age[bucket] = row.by_age.get(bucket, 0) + 1
        reason = entry.unbilled_reason.split(" from ")[0].split(":")[0]
        row.by_reason[reason] = row.by_reason.get(reason, 0) + 1
    return sorted(rows.values(), key=lambda row: (row.oldest, row.client))
