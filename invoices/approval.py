"""The invoice status workflow: one table of allowed transitions, guarded by one function.

    draft    -> approved   (permission invoices.approve_invoice; no pending entries; not stale)
    draft    -> void       (permission invoices.void_invoice)
    approved -> void       (permission invoices.void_invoice)

Approving freezes the invoice and locks its entries (imports then record source changes beside
them instead of applying them). Voiding releases the entries for the next draft.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from invoices.models import Flag, Invoice, InvoiceEntry, InvoiceEvent, InvoiceStatus
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
