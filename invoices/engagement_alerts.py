"""The month overview's engagement caps (billing semantics 13.3): each cap covering the month,
what approved earlier periods in its window and this month's live invoices billed of it, and
the alert level (50/80/100 %) that reaches."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from invoices.core.engagements import alert_level, usage_percent
from invoices.core.pricing import SUBTOTAL_KINDS, LineKind
from invoices.drafting import Period
from invoices.models import EngagementCap, InvoiceLine, InvoiceStatus


@dataclass(frozen=True)
class CapUsage:
    cap: EngagementCap
    hours: Decimal
    amount: Decimal

    @property
    def hours_percent(self) -> Decimal | None:
        return usage_percent(self.hours, self.cap.hours)

    @property
    def amount_percent(self) -> Decimal | None:
        return usage_percent(self.amount, self.cap.amount)

    @property
    def level(self) -> int | None:
        levels = [
            alert_level(self.hours, self.cap.hours),
            alert_level(self.amount, self.cap.amount),
        ]
        return max((lv for lv in levels if lv is not None), default=None)


def engagement_cap_usage(*, period: Period) -> list[CapUsage]:
    """Every engagement cap whose window overlaps `period`, in two queries."""
    caps = list(
        EngagementCap.objects.filter(starts_on__lte=period.end, ends_on__gte=period.start)
        .select_related("client", "project")
        .order_by("client__name", "project__code", "id")
    )
    if not caps:
        return []
    rows = (
        InvoiceLine.objects.filter(
            project_id__in={c.project_id for c in caps},
            kind__in=[*SUBTOTAL_KINDS, LineKind.CAP],
            invoice__period_start__lte=period.end,
        )
        .exclude(invoice__status=InvoiceStatus.VOID)
        .values_list(
            "project_id",
            "invoice__status",
            "invoice__period_start",
            "invoice__period_end",
            "kind",
            "quantity",
            "amount",
        )
    )
    used = {c.pk: [Decimal(0), Decimal(0)] for c in caps}
    for project_id, status, start, end, kind, quantity, amount in rows:
        this_month = (start, end) == (period.start, period.end)
        earlier = status == InvoiceStatus.APPROVED and end < period.start
        for cap in caps:
            if cap.project_id != project_id or not cap.starts_on <= start <= cap.ends_on:
                continue
            if this_month or earlier:
                used[cap.pk][0] += quantity if kind == LineKind.TIME else 0
                used[cap.pk][1] += amount
    return [CapUsage(cap, *used[cap.pk]) for cap in caps]
