"""The month-end overview: per client for a period, how far the month is from done; and,
whatever the month, the time that bills nowhere yet (unbilled, billing semantics 10.1 and 10.2)
and the drafts that must be rebuilt before approval (stale).

A fixed number of queries whatever the number of clients and entries: one aggregate over the
period's entries, one over its invoices, one listing the months that have invoices, one for the
unbilled entries and one for the stale drafts; and for the drafts' pending hours and their
standard value two more, and one for the reasons of the voided invoices listed with their
successors, if any (`month_end_figures`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field, fields
from decimal import Decimal
from fractions import Fraction

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncMonth

from invoices.classification import confidence_threshold
from invoices.core.rounding import round_quantity
from invoices.drafting import Period
from invoices.engagement_alerts import CapUsage, engagement_cap_usage
from invoices.models import Classification, Flag, Invoice, InvoicePush, InvoiceStatus
from invoices.month_end_figures import (
    PendingValue,
    VoidedInvoice,
    pending_values,
    voided_with_successors,
)
from invoices.realization import fixed_fee_realization_by_client, realization_by_client
from invoices.unbilled import UnbilledClient, unbilled_by_client, unbilled_entries
from timesheets.models import TimeEntry

TIERS = [
    (Classification.Tier.RULE, "rules"),
    (Classification.Tier.MEMORY, "memory"),
    (Classification.Tier.LLM, "model"),
    (Classification.Tier.MANUAL, "manual"),
]
PUSHED = (InvoicePush.Status.PUSHED, InvoicePush.Status.MISMATCH)
LOW_CONFIDENCE = "low_confidence"


@dataclass
class InvoiceRow:
    invoice: Invoice
    pending: int
    low_confidence: int
    pushed: bool
    # Beside the draft total: the pending entries' hours and standard value (what deciding
    # them is worth), and the late time of earlier periods it bills (section 10.1).
    pending_value: PendingValue | None = None
    late_seconds: int = 0

    @property
    def late_hours(self) -> Decimal:
        return round_quantity(Fraction(self.late_seconds, 3600))

    @property
    def stage(self) -> str:
        """draft, approved or pushed (to QuickBooks)."""
        if self.pushed:
            return "pushed"
        return self.invoice.status

    @property
    def flags(self) -> list[str]:
        labels = [Flag(flag).label for flag in self.invoice.flags]
        if self.low_confidence:
            labels.append(f"{self.low_confidence} low-confidence")
        return labels


@dataclass
class ClientRow:
    client_id: int
    name: str
    entries: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    invoices: list[InvoiceRow] = field(default_factory=list)
    # Billed / standard value of the period's billed time, in percent (section 10.4).
    realization: Decimal | None = None
    # Section 13.1: fixed fees / the standard value of their time.
    fixed_fee_realization: Decimal | None = None

    @property
    def totals(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for row in self.invoices:
            totals[row.invoice.currency] += row.invoice.total
        return dict(totals)


@dataclass
class UnbilledRow(UnbilledClient):
    """One client's unbilled time, with the client's id (the overview links to its entries)."""

    client_id: int = 0


@dataclass
class MonthOverview:
    period: Period
    clients: list[ClientRow]
    months: list[dt.date]
    # Whatever the month: every client's unbilled time, oldest first, and every stale draft.
    unbilled: list[UnbilledRow] = field(default_factory=list)
    stale: list[Invoice] = field(default_factory=list)
    # The period's voided invoices, each with its successor.
    voided: list[VoidedInvoice] = field(default_factory=list)
    # Section 13.3: the engagement caps covering the month, with their alert levels.
    engagement_caps: list[CapUsage] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return sum(c.entries for c in self.clients)

    @property
    def pending(self) -> int:
        return sum(c.pending for c in self.clients)

    @property
    def by_tier(self) -> dict[str, int]:
        return {label: sum(c.by_tier.get(label, 0) for c in self.clients) for _, label in TIERS}

    @property
    def totals(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for client in self.clients:
            for currency, amount in client.totals.items():
                totals[currency] += amount
        return dict(sorted(totals.items()))

    @property
    def stages(self) -> dict[str, int]:
        stages: dict[str, int] = defaultdict(int)
        for client in self.clients:
            for row in client.invoices:
                stages[row.stage] += 1
        return dict(stages)


def default_period() -> Period:
    """The month of the latest invoice, else of the latest entry, else this month."""
    latest = (
        Invoice.objects.order_by("-period_start").values_list("period_start", flat=True).first()
        or TimeEntry.objects.order_by("-date").values_list("date", flat=True).first()
        or dt.date.today()
    )
    return Period.month(f"{latest:%Y-%m}")


def month_overview(*, period: Period) -> MonthOverview:
    in_period = Q(date__gte=period.start, date__lte=period.end)
    counts = {
        "entries": Count("id"),
        # No classification row yet counts as pending: nothing has decided it.
        "pending": Count(
            "id", filter=Q(classification__needs_review=True) | Q(classification__isnull=True)
        ),
        **{label: Count("id", filter=Q(classification__tier=tier)) for tier, label in TIERS},
    }
    rows = {
        row["client_id"]: ClientRow(
            client_id=row["client_id"],
            name=row["client__name"],
            entries=row["entries"],
            pending=row["pending"],
            by_tier={label: row[label] for _, label in TIERS},
        )
        for row in TimeEntry.objects.filter(in_period)
        .values("client_id", "client__name")
        .annotate(**counts)
        .order_by()
    }
    threshold = confidence_threshold()
    invoices = (
        Invoice.objects.filter(period_start=period.start, period_end=period.end)
        .select_related("client", "project", "voided_by")
        .annotate(
            pending=Count("entry_links", filter=Q(entry_links__state="pending")),
            low_confidence=Count(
                "entry_links",
                filter=Q(entry_links__entry__classification__tier=Classification.Tier.LLM)
                | Q(entry_links__entry__classification__confidence__lt=threshold),
            ),
            pushed=Exists(InvoicePush.objects.filter(invoice=OuterRef("pk"), status__in=PUSHED)),
            late_seconds=Sum(
                "entry_links__entry__duration_seconds",
                filter=Q(entry_links__late_from__isnull=False),
            ),
        )
        .order_by("client__name", "project__code", "id")
    )
    # The voided ones are listed apart, each with its successor.
    period_invoices = list(invoices)
    invoices = [i for i in period_invoices if i.status != InvoiceStatus.VOID]
    pending = pending_values(invoices)
    for invoice in invoices:
        client = rows.get(invoice.client_id)
        if client is None:  # an invoice whose entries moved out of the period
            client = rows[invoice.client_id] = ClientRow(invoice.client_id, invoice.client.name)
        client.invoices.append(
            InvoiceRow(
                invoice,
                invoice.pending,
                invoice.low_confidence,
                invoice.pushed,
                pending_value=pending.get(invoice.pk),
                late_seconds=invoice.late_seconds or 0,
            )
        )
    # Months that have invoices (a small table; the entry table may hold years of rows).
    months = list(
        Invoice.objects.annotate(month=TruncMonth("period_start"))
        .values_list("month", flat=True)
        .distinct()
        .order_by("-month")[:24]
    )
    clients = sorted(rows.values(), key=lambda c: c.name.casefold())
    for client_id, percent in realization_by_client(period=period).items():
        if client_id in rows:
            rows[client_id].realization = percent
    for client_id, percent in fixed_fee_realization_by_client(period=period).items():
        if client_id in rows:
            rows[client_id].fixed_fee_realization = percent
    return MonthOverview(
        period=period,
        clients=clients,
        months=months,
        unbilled=unbilled_rows(),
        stale=list(
            Invoice.objects.filter(status=InvoiceStatus.DRAFT, flags__contains=[Flag.STALE])
            .select_related("client", "project")
            .order_by("period_start", "client__name", "id")
        ),
        engagement_caps=engagement_cap_usage(period=period),
        voided=voided_with_successors(period_invoices),
    )


def unbilled_rows() -> list[UnbilledRow]:
    """`unbilled_by_client(unbilled_entries())`, each row with its client's id."""
    entries = unbilled_entries()
    client_ids = {entry.client.name: entry.client_id for entry in entries}
    names = [f.name for f in fields(UnbilledClient)]
    return [
        UnbilledRow(
            **{name: getattr(row, name) for name in names}, client_id=client_ids[row.client]
        )
        for row in unbilled_by_client(entries)
    ]
