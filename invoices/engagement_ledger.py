"""What approval and void write for section 13, inside their transaction: the milestones an
invoice bills, and the retainer's ledger rows (allowance, drawdown, expiry; a void's reversal).

Each write happens at most once: a milestone is claimed only while no approved invoice holds it,
and the ledger's `retainer_once_per_invoice` constraint allows one row per kind and invoice.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q, Sum

from invoices.core.engagements import retainer_ledger_rows
from invoices.drafting_inputs import retainer_balance
from invoices.errors import BillingError
from invoices.models import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Milestone,
    Retainer,
    RetainerEntry,
)


class EngagementChanged(BillingError):
    """What a draft's fixed fee or drawdown was computed from changed since: rebuild it."""


def record_on_approval(*, invoice: Invoice, user) -> None:
    """Claim the invoice's milestones and write its retainer rows; refuse (the caller's
    transaction rolls back) when another approval got there first."""
    lines = list(
        invoice.lines.filter(kind__in=[InvoiceLine.Kind.FIXED_FEE, InvoiceLine.Kind.DRAWDOWN])
    )
    milestone_ids = [
        ln.derivation["fixed_fee"]["milestone"] for ln in lines if "fixed_fee" in ln.derivation
    ]
    if milestone_ids:
        claimed = Milestone.objects.filter(
            Q(billed_on__isnull=True) | Q(billed_on__status=InvoiceStatus.VOID),
            pk__in=milestone_ids,
        ).update(billed_on=invoice)
        if claimed != len(milestone_ids):
            raise EngagementChanged(
                f"a fixed-fee milestone of {invoice.label} was billed on another invoice since "
                "it was drafted; rebuild it"
            )
    for line in lines:
        if "retainer" in line.derivation:
            _record_drawdown(invoice, line.derivation["retainer"], user)
    if lines:
        # The client's other drafts drew on the balance or billed the milestones before.
        mark_client_drafts_stale(
            client_id=invoice.client_id,
            reason=f"{invoice.number or invoice.label} approved: retainer or fixed fee",
            except_invoice=invoice.pk,
        )


def _record_drawdown(invoice: Invoice, terms: dict, user) -> None:
    balance = retainer_balance(client_id=invoice.client_id, end=invoice.period_end)
    if balance != Decimal(terms["balance"]):
        raise EngagementChanged(
            f"the retainer balance of {invoice.client} is {balance}, not the {terms['balance']} "
            f"{invoice.label} was drafted with; rebuild it"
        )
    rows = retainer_ledger_rows(
        drawn=Decimal(terms["drawn"]),
        available=Decimal(terms["available"]),
        monthly_amount=Decimal(terms["monthly_amount"]) if terms["monthly_amount"] else None,
        rollover=terms["rollover"],
    )
    RetainerEntry.objects.bulk_create(
        RetainerEntry(
            client_id=invoice.client_id,
            kind=kind,
            amount=amount,
            on_date=invoice.period_end,
            invoice=invoice,
            note=f"{invoice.number or invoice.label} approved",
            made_by=user,
        )
        for kind, amount in rows
    )


def reverse_on_void(*, invoice: Invoice, user) -> None:
    """A void gives back what the invoice drew (one reversal row of the opposite sign); its
    milestones are unbilled again because their invoice is void."""
    total = invoice.retainer_entries.exclude(kind=RetainerEntry.Kind.REVERSAL).aggregate(
        total=Sum("amount")
    )["total"]
    released = invoice.milestones.exists()
    if total or released:
        mark_client_drafts_stale(
            client_id=invoice.client_id,
            reason=f"{invoice.number or invoice.label} voided: retainer or fixed fee",
            except_invoice=invoice.pk,
        )
    if total:
        RetainerEntry.objects.create(
            client_id=invoice.client_id,
            kind=RetainerEntry.Kind.REVERSAL,
            amount=-total,
            on_date=invoice.period_end,
            invoice=invoice,
            note=f"{invoice.number or invoice.label} voided",
            made_by=user,
        )


class TopUpRefused(BillingError):
    """A top-up that cannot be recorded; the message says what to change."""


# `invoices_mark_client_drafts_stale` (invoices.guards) but for one invoice that is itself
# being approved or voided: its status is still "draft" in the database when this runs.
MARK_OTHER_DRAFTS_STALE = """
WITH flagged AS (
    UPDATE invoices_invoice invoice
       SET flags = array_append(invoice.flags, 'stale')
     WHERE invoice.status = 'draft'
       AND NOT ('stale' = ANY(invoice.flags))
       AND invoice.client_id = %s
       AND invoice.id <> %s
    RETURNING invoice.id
)
INSERT INTO invoices_invoiceevent (invoice_id, action, actor_id, at, detail)
SELECT id, 'flagged stale', NULL, now(), jsonb_build_object('reason', %s::text) FROM flagged
"""


def mark_client_drafts_stale(
    *, client_id: int, reason: str, except_invoice: int | None = None
) -> None:
    """Section 13's terms or balance of a client changed: its drafts (but `except_invoice`)
    are stale until rebuilt, with the audit event the configuration triggers write."""
    with connection.cursor() as cursor:
        if except_invoice is None:
            cursor.execute(
                "SELECT invoices_mark_client_drafts_stale(%s::bigint[], %s)", [[client_id], reason]
            )
        else:
            cursor.execute(MARK_OTHER_DRAFTS_STALE, [client_id, except_invoice, reason])


def top_up_retainer(*, client, amount: Decimal, on_date, note: str, user) -> RetainerEntry:
    """Add to a client's prepaid balance (13.2); its drafts are stale (their drawdown was
    computed from the balance before)."""
    if amount <= 0:
        raise TopUpRefused(f"a top-up adds to the balance: {amount} is not positive")
    if not Retainer.objects.filter(client=client).exists():
        raise TopUpRefused(f"{client} has no retainer; add one first")
    with transaction.atomic():
        entry = RetainerEntry.objects.create(
            client=client,
            kind=RetainerEntry.Kind.TOP_UP,
            amount=amount,
            on_date=on_date,
            note=note,
            made_by=user,
        )
        mark_client_drafts_stale(client_id=client.pk, reason="retainer topped up")
    return entry
