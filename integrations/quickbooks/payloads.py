"""What goes to and comes from the Accounting API as typed values: customers, items and
invoices, with `Decimal` money. python-quickbooks' `DecimalEncoder` writes `Decimal` as a JSON
*string* ("150.00"), so request bodies are serialised here with `Decimal` as a JSON *number*
with its exact digits."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from integrations.quickbooks.errors import QuickBooksTransientError

# --- Exact JSON -----------------------------------------------------------------------------


def dumps_exact(value: Any) -> str:
    """JSON with every `Decimal` written as a number with exactly its digits (never via float,
    never as a string)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite amount: {value}")
        return format(value, "f")
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("amounts must be Decimal, not float")
    return json.dumps(value)


def _decimal(value: Any) -> Decimal:
    """A vendor number as Decimal (responses are parsed with parse_float=Decimal)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        return Decimal(value) if value != "" else Decimal(0)
    raise QuickBooksTransientError(f"QuickBooks sent an amount we cannot read: {value!r}")


# --- Customers, items, invoices -------------------------------------------------------------


@dataclass(frozen=True)
class RemoteCustomer:
    id: str
    display_name: str
    active: bool = True


@dataclass(frozen=True)
class RemoteItem:
    id: str
    name: str
    type: str
    active: bool = True


@dataclass(frozen=True)
class InvoiceLineInput:
    item_id: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    service_date: dt.date | None = None
    # The line's SalesItemLineDetail.TaxCodeRef: a TaxCode Id (VAT/GST companies) or the US
    # pseudo codes "TAX"/"NON"; empty sends none (an untaxed invoice, as before taxes).
    tax_code_id: str = ""


@dataclass(frozen=True)
class InvoiceInput:
    customer_id: str
    doc_number: str
    txn_date: dt.date
    due_date: dt.date
    currency: str
    lines: tuple[InvoiceLineInput, ...]
    private_note: str
    # TxnTaxDetail.TotalTax (python-quickbooks `objects/tax.py` TxnTaxDetail: TotalTax,
    # TxnTaxCodeRef, TaxLine); None sends no TxnTaxDetail.
    total_tax: Decimal | None = None


@dataclass(frozen=True)
class RemoteInvoice:
    id: str
    sync_token: str
    doc_number: str
    total_amount: Decimal
    balance: Decimal
    email_status: str
    private_note: str
    # TxnTaxDetail.TotalTax as QuickBooks computed it (None when it sent none).
    total_tax: Decimal | None = None

    @property
    def status(self) -> str:
        """draft, sent, partial, paid or voided. QuickBooks has no status field: a voided
        invoice keeps its number with amounts zeroed and "Voided" leading its private note."""
        if self.private_note.startswith("Voided"):
            return "voided"
        if self.total_amount > 0 and self.balance == 0:
            return "paid"
        if 0 < self.balance < self.total_amount:
            return "partial"
        if self.email_status == "EmailSent":
            return "sent"
        return "draft"


def invoice_body(invoice: InvoiceInput) -> dict[str, Any]:
    """The create body: a draft for sending (EmailStatus NotSet, no BillEmail: not emailed)."""
    return {
        "CustomerRef": {"value": invoice.customer_id},
        "DocNumber": invoice.doc_number,
        "TxnDate": invoice.txn_date.isoformat(),
        "DueDate": invoice.due_date.isoformat(),
        "CurrencyRef": {"value": invoice.currency},
        "PrivateNote": invoice.private_note,
        "EmailStatus": "NotSet",
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": line.amount,
                "Description": line.description,
                "SalesItemLineDetail": {
                    "ItemRef": {"value": line.item_id},
                    "Qty": line.quantity,
                    "UnitPrice": line.unit_price,
                    **({"ServiceDate": line.service_date.isoformat()} if line.service_date else {}),
                    **({"TaxCodeRef": {"value": line.tax_code_id}} if line.tax_code_id else {}),
                },
            }
            for line in invoice.lines
        ],
        **(
            {"TxnTaxDetail": {"TotalTax": invoice.total_tax}}
            if invoice.total_tax is not None
            else {}
        ),
    }


def customer_from_row(row: dict[str, Any]) -> RemoteCustomer:
    return RemoteCustomer(
        id=str(row["Id"]),
        display_name=str(row.get("DisplayName", "")),
        active=bool(row.get("Active", True)),
    )


def item_from_row(row: dict[str, Any]) -> RemoteItem:
    return RemoteItem(
        id=str(row["Id"]),
        name=str(row.get("Name", "")),
        type=str(row.get("Type", "")),
        active=bool(row.get("Active", True)),
    )


def invoice_from_row(row: dict[str, Any]) -> RemoteInvoice:
    return RemoteInvoice(
        id=str(row["Id"]),
        sync_token=str(row.get("SyncToken", "")),
        doc_number=str(row.get("DocNumber", "")),
        total_amount=_decimal(row.get("TotalAmt", 0)),
        balance=_decimal(row.get("Balance", 0)),
        email_status=str(row.get("EmailStatus", "")),
        private_note=str(row.get("PrivateNote", "")),
        total_tax=_total_tax(row),
    )


def _total_tax(row: dict[str, Any]) -> Decimal | None:
    detail = row.get("TxnTaxDetail")
    if not isinstance(detail, dict) or "TotalTax" not in detail:
        return None
    return _decimal(detail["TotalTax"])
