"""The machine-readable face of the product: a period's invoices as JSON (and lines as CSV).

The JSON shape is documented in docs/invoice-export.md and versioned by its `format` field;
change it only by adding fields, or by a new format version.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from decimal import Decimal

from invoices.drafting import Period
from invoices.models import Invoice, InvoiceEntry, InvoiceLine, InvoiceStatus

FORMAT = "billables.invoices/1"

# A cell starting with one of these is run as a formula by spreadsheet programs (CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def export_period(*, period: Period, include_void: bool = False) -> dict:
    invoices = (
        Invoice.objects.filter(period_start__gte=period.start, period_end__lte=period.end)
        .select_related("client", "project")
        .order_by("client__name", "project__code", "project__name", "id")
    )
    if not include_void:
        invoices = invoices.exclude(status=InvoiceStatus.VOID)
    invoices = list(invoices)
    links = (
        InvoiceEntry.objects.filter(invoice__in=invoices)
        .select_related("entry", "entry__person", "line")
        .order_by("entry__date", "entry__id")
    )
    keys_by_line: dict[int, list[str]] = defaultdict(list)
    pending_by_invoice: dict[int, list[dict]] = defaultdict(list)
    for link in links:
        if link.line_id is not None:
            keys_by_line[link.line_id].append(link.entry.key)
        else:
            entry = link.entry
            pending_by_invoice[link.invoice_id].append(
                {
                    "entry": entry.key,
                    "date": entry.date.isoformat(),
                    "person": entry.person.name,
                    "hours": str(Decimal(entry.duration_seconds) / 3600),
                    "notes": entry.notes,
                    "reason": link.pending_reason,
                }
            )
    lines_by_invoice = defaultdict(list)
    lines = InvoiceLine.objects.filter(invoice__in=invoices).select_related("category")
    for line in lines.order_by("invoice_id", "position"):
        lines_by_invoice[line.invoice_id].append(line)
    return {
        "format": FORMAT,
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "invoices": [
            {
                "number": inv.number,
                "client": inv.client.name,
                "project": (
                    {"code": inv.project.code, "name": inv.project.name} if inv.project else None
                ),
                "currency": inv.currency,
                "status": inv.status,
                "issue_date": inv.issue_date.isoformat(),
                "due_date": inv.due_date.isoformat(),
                "lines": [
                    {
                        "kind": line.kind,
                        "description": line.description,
                        "category": line.category.key if line.category else None,
                        "code": line.billing_code or None,
                        "quantity": str(line.quantity),
                        "unit_price": str(line.unit_price),
                        "amount": str(line.amount),
                        "entries": keys_by_line.get(line.id, []),
                        **_adjustments(line),
                        **_engagement(line),
                        **_line_tax(line),
                    }
                    for line in lines_by_invoice[inv.id]
                ],
                "subtotal": str(inv.subtotal),
                "adjustments": str(inv.adjustments),
                "discount": str(inv.discount),
                "total": str(inv.total),
                # Billing semantics 12.5: the tax on top of `total`, and per code and rate.
                "tax_total": str(inv.tax_total),
                "total_with_tax": str(inv.total_with_tax),
                "tax_summary": inv.tax_summary,
                "flags": list(inv.flags),
                "pending": pending_by_invoice.get(inv.id, []),
            }
            for inv in invoices
        ],
    }


def _engagement(line: InvoiceLine) -> dict:
    """Section 13, only on the lines it concerns: `fixed_fee` on a fee line (its milestone,
    the fee, the standard value of the time and the realization), `fixed_fee_time` on a
    fixed-fee project's no-charge line (its standard amount), `retainer` on a drawdown line
    (balance, available, drawn, remaining, overage), `engagement_cap` on a cap line an
    engagement cap lowered."""
    keys = ("fixed_fee", "fixed_fee_time", "retainer", "engagement_cap")
    return {key: line.derivation[key] for key in keys if key in line.derivation}


def _adjustments(line: InvoiceLine) -> dict:
    """Section 10.4, only on the lines it concerns: `adjustment` on a time line with
    written-down or written-up entries (against its standard value, what it would have billed);
    `manual` on a manual line (fixed fee, expense, credit): who added it and why."""
    extra: dict = {}
    adjustment = line.derivation.get("adjustment")
    if adjustment is not None:
        entries = adjustment["entries"]
        extra["adjustment"] = {
            "standard_quantity": adjustment["standard_quantity"],
            "standard_amount": adjustment["standard_amount"],
            "amount": adjustment["amount"],
            "by": sorted({entry["by"] for entry in entries}),
            "reasons": list(dict.fromkeys(entry["reason"] for entry in entries)),
        }
    manual = line.derivation.get("manual_line")
    if manual is not None:
        extra["manual"] = {"by": manual["by"], "reason": manual["reason"]}
    return extra


def _line_tax(line: InvoiceLine) -> dict:
    """Section 12, only on a line with a tax code: the code, the line's taxable base (after its
    cap and discount shares) and its tax (null when the firm rounds tax on the invoice)."""
    if not line.tax_code:
        return {}
    amount = None if line.tax_amount is None else str(line.tax_amount)
    return {"tax": {"code": line.tax_code, "base": str(line.tax_base), "amount": amount}}


def safe_cell(value) -> str:
    """A value for a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, Decimal | int):
        return str(value)
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


CSV_COLUMNS = [
    "invoice",
    "client",
    "currency",
    "status",
    "line",
    "kind",
    "description",
    "category",
    "code",
    "quantity",
    "unit_price",
    "amount",
]


def period_lines_csv(document: dict) -> str:
    """The lines of an exported period as CSV, every text cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for inv in document["invoices"]:
        for position, line in enumerate(inv["lines"], start=1):
            writer.writerow(
                [
                    safe_cell(inv["number"]),
                    safe_cell(inv["client"]),
                    inv["currency"],
                    inv["status"],
                    position,
                    line["kind"],
                    safe_cell(line["description"]),
                    safe_cell(line["category"]),
                    safe_cell(line["code"]),
                    Decimal(line["quantity"]),
                    Decimal(line["unit_price"]),
                    Decimal(line["amount"]),
                ]
            )
    return out.getvalue()
