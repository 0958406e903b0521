"""Our invoice as QuickBooks should hold it: one line per line, adjustments included."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings
from django.urls import reverse

from integrations import quickbooks as qbo
from invoices.models import CustomerMapping, Invoice, InvoiceLine, InvoicePush, ItemMapping
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
    tax_refs, total_tax = tax_references(invoice=invoice, lines=lines)
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
                tax_code_id=tax_ref,
            )
            for line, tax_ref in zip(lines, tax_refs, strict=True)
        ),
        total_tax=total_tax,
    )


# Billing semantics 12.6 and docs/quickbooks.md "Taxes". Intuit, "Manage sales tax for non-US
# locales": each taxable line of a sales transaction carries a TaxCode (TaxCodeRef), and the
# transaction's TxnTaxDetail holds the tax for the whole transaction. "Manage sales tax for US
# locales": a line is only taxable or not (the pseudo tax codes TAX and NON), and with automated
# sales tax QuickBooks computes the tax itself. Shapes as in python-quickbooks
# (quickbooks/objects/tax.py: TxnTaxDetail with TotalTax, TxnTaxCodeRef, TaxLine).
US_TAXABLE, US_NOT_TAXABLE = "TAX", "NON"
# Lines that bill nothing of their own or lower the taxable lines: they take the invoice's one
# QuickBooks tax code (QuickBooks then lowers that code's base as our shares did).
_FOLLOWING_KINDS = ("cap", "discount", "no_charge")


def tax_references(
    *, invoice: Invoice, lines: Sequence[InvoiceLine]
) -> tuple[list[str], Decimal | None]:
    """Each line's TaxCodeRef value and the TxnTaxDetail.TotalTax to send: none at all for an
    invoice without tax (as before taxes); for a US company (a code mapped to TAX) TAX or NON per
    line and no total (QuickBooks computes it, and the push compares); otherwise each line's
    mapped TaxCode and our tax total."""
    if not any(line.tax_code for line in lines):
        return ["" for _ in lines], None
    mapped = {row["code"]: row.get("quickbooks_id") or "" for row in invoice.tax_summary}
    us = US_TAXABLE in mapped.values()
    unmapped = sorted(code for code, ref in mapped.items() if not ref)
    if unmapped and not us:
        raise PushRefused(
            f"{invoice.label}: tax code {', '.join(unmapped)} has no QuickBooks TaxCode id; set "
            "it under Tax codes (the TaxCode's Id in QuickBooks) and rebuild the draft"
        )
    refs = {code: (US_TAXABLE if us else ref) for code, ref in mapped.items()}
    single = next(iter(set(refs.values()))) if len(set(refs.values())) == 1 else ""
    return [_line_ref(invoice, line, refs, single, us=us) for line in lines], (
        None if us else invoice.tax_total
    )


def _line_ref(
    invoice: Invoice, line: InvoiceLine, refs: dict[str, str], single: str, *, us: bool
) -> str:
    if line.tax_code:
        return refs[line.tax_code]
    if line.kind == "no_charge":
        return single or next(iter(refs.values()))
    if line.kind in _FOLLOWING_KINDS and single:
        return single
    if us and line.kind not in _FOLLOWING_KINDS:
        return US_NOT_TAXABLE
    raise PushRefused(
        f"{invoice.label}: line {line.position} ({line.description}) has no single QuickBooks "
        "tax code: QuickBooks needs a TaxCodeRef on every line of a VAT/GST invoice, and one "
        "code for a cap or discount over lines of several codes; give the line a tax code "
        "(an exempt or zero-rated one mapped to QuickBooks) or push it by hand"
    )


def total_mismatch(*, invoice: Invoice, remote: qbo.RemoteInvoice) -> str:
    """Why QuickBooks' invoice does not hold our figures, or "" when it does: its total against
    ours with tax (with a per-QuickBooks rate, its own tax counts as ours); for a taxed invoice
    its tax beside ours too, so a difference in tax is never hidden."""
    qbo_tax = remote.total_tax or Decimal(0)
    per_quickbooks = any(row.get("tax") is None for row in invoice.tax_summary)
    expected = invoice.total + qbo_tax if per_quickbooks else invoice.total_with_tax
    tax_differs = bool(invoice.tax_summary) and not per_quickbooks and qbo_tax != invoice.tax_total
    if remote.total_amount == expected and not tax_differs:
        return ""
    currency = invoice.currency
    message = (
        f"QuickBooks' total is {remote.total_amount} {currency}, ours is {expected} "
        f"({remote.total_amount - expected:+} {currency})"
    )
    if tax_differs:
        message += f"; its tax is {qbo_tax} {currency}, ours {invoice.tax_total}"
    return (
        f"{message}: check tax and line settings of QuickBooks invoice {remote.doc_number} "
        "before sending it"
    )
