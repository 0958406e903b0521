"""Two figures of the month-end overview (issue 16) that need more than an aggregate: the
standard value of each draft's pending entries (what deciding them is worth: hours x the rate
each entry would get, billing semantics section 5, as the review queue values its groups),
and each voided invoice's successor (the invoice of the same client, project and period made
after it), so the overview links the two. Each a fixed number of queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from invoices.configuration import load_rate_table
from invoices.core.rounding import currency_places, fraction_to_decimal
from invoices.models import Invoice, InvoiceEntry, InvoiceEvent, InvoiceStatus


@dataclass(frozen=True)
class PendingValue:
    """A draft's pending entries: their hours, and their standard value in its currency
    (`unpriced` counts the entries no rate row prices, left out of the value)."""

    seconds: int
    value: Decimal
    unpriced: int

    @property
    def hours(self) -> Decimal:
        return fraction_to_decimal(Fraction(self.seconds, 3600), 2)


def pending_values(invoices: Iterable[Invoice]) -> dict[int, PendingValue]:
    """Per invoice id, its pending entries' hours and standard value. Two queries (the links,
    the rate table), whatever the number of drafts and entries."""
    currency = {invoice.pk: invoice.currency for invoice in invoices}
    links = InvoiceEntry.objects.filter(
        invoice_id__in=list(currency), state=InvoiceEntry.State.PENDING
    ).values_list(
        "invoice_id",
        "entry__date",
        "entry__client_id",
        "entry__project_id",
        "entry__person_id",
        "entry__person__role",
        "entry__duration_seconds",
    )
    seconds: dict[int, int] = defaultdict(int)
    value: dict[int, Fraction] = defaultdict(Fraction)
    unpriced: dict[int, int] = defaultdict(int)
    rates = None
    for invoice_id, day, client, project, person, role, duration in links:
        rates = rates or load_rate_table()
        seconds[invoice_id] += duration
        match = rates.resolve(day=day, client=client, project=project, person=person, role=role)
        if match is None:
            unpriced[invoice_id] += 1
        else:
            value[invoice_id] += Fraction(duration, 3600) * Fraction(match.row.rate)
    return {
        pk: PendingValue(
            seconds=seconds[pk],
            value=fraction_to_decimal(value[pk], currency_places(currency[pk])),
            unpriced=unpriced[pk],
        )
        for pk in seconds
    }


@dataclass(frozen=True)
class VoidedInvoice:
    invoice: Invoice
    successor: Invoice | None  # None: nothing has been drafted in its place yet
    reason: str = ""  # as the voiding reviewer gave it


def voided_with_successors(invoices: Iterable[Invoice]) -> list[VoidedInvoice]:
    """The voided invoices among `invoices` (a period's, of every status), each with the next
    invoice made for the same client, project and period (a draft, an approved invoice, or
    a later void with its own successor). One query for the voids' reasons, none without
    a void."""
    invoices = sorted(invoices, key=lambda invoice: (invoice.created_at, invoice.pk))
    by_scope: dict[tuple[int, int | None], list[Invoice]] = defaultdict(list)
    for invoice in invoices:
        by_scope[(invoice.client_id, invoice.project_id)].append(invoice)
    voided = [invoice for invoice in invoices if invoice.status == InvoiceStatus.VOID]
    if not voided:
        return []
    reasons = dict(
        InvoiceEvent.objects.filter(invoice__in=voided, action=InvoiceStatus.VOID).values_list(
            "invoice_id", "detail__reason"
        )
    )
    out = []
    for invoice in voided:
        later = by_scope[(invoice.client_id, invoice.project_id)]
        successor = next(iter(later[later.index(invoice) + 1 :]), None)
        out.append(
            VoidedInvoice(
                invoice=invoice, successor=successor, reason=reasons.get(invoice.pk) or ""
            )
        )
    return sorted(out, key=lambda v: (v.invoice.client.name.casefold(), v.invoice.pk))


def void_chain(invoice: Invoice) -> tuple[Invoice | None, Invoice | None]:
    """(the voided invoice this one replaced, the invoice that replaced this one if it is
    void): the invoice page links both ways, as the overview links a void to its successor.
    One query."""
    others = list(
        Invoice.objects.filter(
            client_id=invoice.client_id,
            project_id=invoice.project_id,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
        )
        .exclude(pk=invoice.pk)
        .order_by("created_at", "id")
    )
    here = (invoice.created_at, invoice.pk)
    before = [other for other in others if (other.created_at, other.pk) < here]
    after = [other for other in others if (other.created_at, other.pk) > here]
    replaced = before[-1] if before and before[-1].status == InvoiceStatus.VOID else None
    successor = after[0] if after and invoice.status == InvoiceStatus.VOID else None
    return replaced, successor
