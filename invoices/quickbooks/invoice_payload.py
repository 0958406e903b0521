"""Our invoice as QuickBooks should hold it: one line per line, adjustments included."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from integrations import quickbooks as qbo
from invoices.models import CustomerMapping, Invoice, InvoicePush, ItemMapping
from invoices.quickbooks.connection import load_connection
from invoices.quickbooks.errors import PushRefused
from invoices.quickbooks.mapping import missing_mappings


def _line_description(line) -> str:
    return f"[{line.billing_code}] {line.description}" if line.billing_code else line.description


def invoice_input(*, invoice: Invoice, push: InvoicePush) -> qbo.InvoiceInput:
    """Our invoice as QuickBooks should hold it: one line per line, adjustments included. A
    line with a category (time, or a manual fixed fee, expense or credit) goes on that
    category's item; one without (a manual line without a category, a cap, a discount) on the
    default item."""
    missing = missing_mappings(invoice=invoice)
    if missing:
        raise PushRefused(missing.message(invoice.label))
    customer = CustomerMapping.objects.get(client_id=invoice.client_id)
    lines = list(invoice.lines.order_by("position"))
    items = dict(
        ItemMapping.objects.filter(
            category_id__in={ln.category_id for ln in lines if ln.category_id}
        ).values_list("category_id", "qbo_item_id")
    )
    default_item = load_connection().default_item_id
    link = getattr(settings, "BILLABLES_BASE_URL", "").rstrip("/") + reverse(
        "admin:invoices_invoice_change", args=[invoice.pk]
    )
    return qbo.InvoiceInput(
        customer_id=customer.qbo_customer_id,
        doc_number=invoice.number,
        txn_date=invoice.issue_date,
        due_date=invoice.due_date,
        currency=invoice.currency,
        private_note=f"billables {invoice.number} (request {push.request_id}): {link}",
        lines=tuple(
            qbo.InvoiceLineInput(
                item_id=items[line.category_id] if line.category_id else default_item,
                description=_line_description(line),
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                service_date=line.first_date,
            )
            for line in lines
        ),
    )
