"""Realization per client (billing semantics 10.4): what the period's time lines bill, as a
percentage of their standard value (what they would bill without a reviewer's write-downs and
write-ups), to 1 decimal.

Only billed time counts: manual lines are not time, and caps and discounts are the client's
policy, not a reviewer's adjustment. A client with no billed time has no figure. Voided
invoices are left out; drafts and approved invoices count.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.db.models import Q
from django.db.models.fields.json import KT

from invoices.core.rounding import round_half_up
from invoices.drafting import Period
from invoices.models import InvoiceLine, InvoiceStatus

PERCENT_PLACES = 1


def realization_by_client(*, period: Period) -> dict[int, Decimal]:
    """client id -> billed / standard value of its time lines of `period`, in percent. One
    query whatever the number of lines."""
    billed: dict[int, Decimal] = defaultdict(Decimal)
    standard: dict[int, Decimal] = defaultdict(Decimal)
    rows = (
        InvoiceLine.objects.filter(
            kind=InvoiceLine.Kind.TIME,
            invoice__period_start=period.start,
            invoice__period_end=period.end,
        )
        .exclude(invoice__status=InvoiceStatus.VOID)
        .annotate(standard_amount=KT("derivation__adjustment__standard_amount"))
        .values_list("invoice__client_id", "amount", "standard_amount")
    )
    for client_id, amount, standard_amount in rows:
        billed[client_id] += amount
        # An unadjusted line bills its standard value.
        standard[client_id] += Decimal(standard_amount) if standard_amount else amount
    return {
        client_id: round_half_up(billed[client_id] * 100 / value, PERCENT_PLACES)
        for client_id, value in standard.items()
        if value
    }


def fixed_fee_realization_by_client(*, period: Period) -> dict[int, Decimal]:
    """Section 13.1: client id -> its fixed fees billed in `period` / the standard value of
    their projects' time on the same invoices (the no-charge detail lines), in percent. One
    query; voided invoices are left out."""
    fees: dict[int, Decimal] = defaultdict(Decimal)
    standard: dict[int, Decimal] = defaultdict(Decimal)
    rows = (
        InvoiceLine.objects.filter(
            Q(kind=InvoiceLine.Kind.FIXED_FEE, derivation__has_key="fixed_fee")
            | Q(kind=InvoiceLine.Kind.NO_CHARGE, derivation__has_key="fixed_fee_time"),
            invoice__period_start=period.start,
            invoice__period_end=period.end,
        )
        .exclude(invoice__status=InvoiceStatus.VOID)
        .annotate(standard_amount=KT("derivation__fixed_fee_time__standard_amount"))
        .values_list("invoice__client_id", "kind", "amount", "standard_amount")
    )
    for client_id, kind, amount, standard_amount in rows:
        if kind == InvoiceLine.Kind.FIXED_FEE:
            fees[client_id] += amount
        else:
            standard[client_id] += Decimal(standard_amount)
    return {
        client_id: round_half_up(fees[client_id] * 100 / value, PERCENT_PLACES)
        for client_id, value in standard.items()
        if value and client_id in fees
    }
