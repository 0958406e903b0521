"""The review page's pre-send section (`admin/invoices/ledes_presend.html`): its findings are
computed here, from the invoice alone, so the review page's own view needs no change."""

from __future__ import annotations

from django import template

from invoices.ledes import presend_checks
from invoices.models import ClientPolicy, Invoice, InvoiceStatus

register = template.Library()


@register.simple_tag
def ledes_presend(invoice: Invoice) -> dict:
    """The findings, whether the client requires UTBMS (a LEDES client, whose section is
    always shown) and whether a LEDES file can be downloaded (approved, nothing blocking)."""
    policy = ClientPolicy.objects.filter(client_id=invoice.client_id).first()
    findings = presend_checks(invoice=invoice)
    return {
        "findings": findings,
        "requires_utbms": bool(policy and policy.requires_utbms),
        "downloadable": invoice.status == InvoiceStatus.APPROVED
        and not any(f.blocks_export for f in findings),
    }
