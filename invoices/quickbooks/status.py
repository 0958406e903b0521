"""Reading the pushed invoices' status back from QuickBooks."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from invoices.models import InvoiceEvent, InvoicePush
from invoices.quickbooks.connection import with_api
from invoices.quickbooks.queueing import FINAL_REMOTE_STATUSES, IN_QUICKBOOKS


@dataclass(frozen=True)
class StatusSummary:
    checked: int
    changed: int

    def __str__(self) -> str:
        return f"{self.checked} QuickBooks invoice(s) checked, {self.changed} changed"


def refresh_statuses() -> StatusSummary:
    """Read the pushed invoices' state in QuickBooks (draft, sent, partial, paid, voided,
    deleted). Voided and deleted are final and not read again."""
    rows = list(
        InvoicePush.objects.filter(status__in=IN_QUICKBOOKS)
        .exclude(qbo_invoice_id="")
        .exclude(qbo_status__in=FINAL_REMOTE_STATUSES)
    )
    if not rows:
        return StatusSummary(0, 0)
    ids = [row.qbo_invoice_id for row in rows]
    remote = {r.id: r for r in with_api(lambda api: api.read_invoices(ids))}
    now = timezone.now()
    changed = 0
    for row in rows:
        found = remote.get(row.qbo_invoice_id)
        status = found.status if found else "deleted"
        with transaction.atomic():
            # A void in QuickBooks recorded since the rows were read (voiding.py) is final:
            # an answer read before it must not write an open status back over it.
            current = (
                InvoicePush.objects.select_for_update()
                .filter(pk=row.pk)
                .exclude(qbo_status__in=FINAL_REMOTE_STATUSES)
                .first()
            )
            if current is None:
                continue
            if status != current.qbo_status:
                changed += 1
                InvoiceEvent.objects.create(
                    invoice_id=current.invoice_id,
                    action="qbo_status",
                    detail={
                        "qbo_invoice_id": current.qbo_invoice_id,
                        "status": {"before": current.qbo_status, "after": status},
                    },
                )
            current.qbo_status = status
            current.status_checked_at = now
            if found is not None:
                current.sync_token = found.sync_token
            current.save(update_fields=["qbo_status", "status_checked_at", "sync_token"])
    return StatusSummary(len(rows), changed)
