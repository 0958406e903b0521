"""The invoice status workflow: one table of allowed transitions, guarded by one function.

    draft    -> approved   (permission invoices.approve_invoice; no pending entries; not stale;
                            when the firm asks for it, not by the last corrector of its entries)
    draft    -> void       (permission invoices.void_invoice)
    approved -> void       (permission invoices.void_invoice)

Every transition also needs a two-factor login when the firm requires it (`invoices.two_factor`).

Approving freezes the invoice and locks its entries (imports then record source changes beside
them instead of applying them). Voiding releases the entries for the next draft.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from invoices.models import (
    Classification,
    Firm,
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceStatus,
)
from invoices.two_factor import TWO_FACTOR_NEEDED, is_verified, two_factor_required
from timesheets.models import TimeEntry

TRANSITIONS: dict[tuple[str, str], str] = {
    (InvoiceStatus.DRAFT, InvoiceStatus.APPROVED): "invoices.approve_invoice",
    (InvoiceStatus.DRAFT, InvoiceStatus.VOID): "invoices.void_invoice",
    (InvoiceStatus.APPROVED, InvoiceStatus.VOID): "invoices.void_invoice",
}


class InvalidTransition(Exception):
    """The invoice cannot move to that status now; the message says why."""


def approve_invoice(*, invoice: Invoice, user) -> Invoice:
    return _transition(invoice=invoice, to=InvoiceStatus.APPROVED, user=user)


def void_invoice(*, invoice: Invoice, user, reason: str = "") -> Invoice:
    return _transition(invoice=invoice, to=InvoiceStatus.VOID, user=user, reason=reason)


def _transition(*, invoice: Invoice, to: str, user, reason: str = "") -> Invoice:
    with transaction.atomic():
        # Re-read under lock: a concurrent rebuild or approval sees our decision, not a race.
        current = Invoice.objects.select_for_update().get(pk=invoice.pk)
        permission = TRANSITIONS.get((current.status, to))
        if permission is None:
            raise InvalidTransition(
                f"{current.number} is {current.get_status_display().lower()} and cannot be "
                f"made {InvoiceStatus(to).label.lower()}"
            )
        if user is None or not user.has_perm(permission):
            raise InvalidTransition(f"you do not have the permission to do that ({permission})")
        if two_factor_required() and not is_verified(user):
            raise InvalidTransition(TWO_FACTOR_NEEDED)
        links = InvoiceEntry.objects.filter(invoice=current)
        entry_ids = links.values("entry_id")
        now = timezone.now()
        if to == InvoiceStatus.APPROVED:
            pending = links.filter(state=InvoiceEntry.State.PENDING).count()
            if pending:
                raise InvalidTransition(
                    f"{current.number} has {pending} entr{'y' if pending == 1 else 'ies'} "
                    "pending review; resolve them (the draft rebuilds) before approving"
                )
            if Flag.STALE in current.flags:
                raise InvalidTransition(
                    f"entries of {current.number} changed since it was drafted; rebuild it first"
                )
            _check_four_eyes(current, user)
            current.approved_at, current.approved_by = now, user
            TimeEntry.objects.filter(id__in=entry_ids).update(locked=True)
        else:
            current.voided_at, current.voided_by = now, user
            TimeEntry.objects.filter(id__in=entry_ids).update(locked=False)
            links.update(is_live=False)
        before = current.status
        current.status = to
        current.save(
            update_fields=["status", "approved_at", "approved_by", "voided_at", "voided_by"]
        )
        InvoiceEvent.objects.create(
            invoice=current,
            action=to,
            actor=user,
            detail={
                "status": {"before": before, "after": to},
                "total": str(current.total),
                **({"reason": reason} if reason else {}),
            },
        )
    return current


def last_corrector(*, invoice: Invoice):
    """Who made the most recent reviewer decision on any entry of the invoice, or None."""
    latest = (
        Classification.objects.filter(
            entry__invoice_links__invoice=invoice,
            entry__invoice_links__is_live=True,
            manual_at__isnull=False,
            manual_by__isnull=False,
        )
        .select_related("manual_by")
        .order_by("-manual_at")
        .first()
    )
    return latest.manual_by if latest is not None else None


def _check_four_eyes(invoice: Invoice, user) -> None:
    """Segregation of duties, when the firm asks for it: the person whose corrections shaped
    the invoice last is not the one who approves it."""
    required = (
        Firm.objects.filter(pk=1).values_list("approver_must_differ_from_corrector", flat=True)
    ).first()
    if not required:
        return
    corrector = last_corrector(invoice=invoice)
    if corrector is not None and corrector.pk == user.pk:
        raise InvalidTransition(
            f"you made the last correction on {invoice.number}; the firm requires another "
            "approver (Firm setting: approver must differ from the last corrector)"
        )
