"""Billing configuration, classification decisions and invoices, one module per concern.

Every model is re-exported here, so `from invoices.models import Invoice` works as it did when
this was one file.

Amounts are DecimalFields with a fixed scale and are always computed (and rounded) in Python by
`invoices.core.rounding` before they are stored; the database never rounds money.
"""

# isort: off
# Definition order, not alphabetical: Django registers each model when its module is first
# imported, and this keeps `apps.get_models()` in the order of the single file this was.
from invoices.models.amounts import MONEY, RATE
from invoices.models.firm import Firm
from invoices.models.numbering import InvoiceNumberSequence
from invoices.models.policy import BillingCode, Cap, Category, ClientPolicy, RateMultiplier
from invoices.models.rate_table import Rate
from invoices.models.classification import Classification, ClassificationRule
from invoices.models.invoice import Flag, Invoice, InvoiceStatus
from invoices.models.adjustments import EntryAdjustment, ManualLine
from invoices.models.lines import InvoiceEntry, InvoiceLine
from invoices.models.audit import InvoiceEvent
from invoices.models.model_tier import ModelRequest, ModelRun, TokenUsage
from invoices.models.quickbooks import (
    CustomerMapping,
    InvoicePush,
    ItemMapping,
    QuickBooksConnection,
)
from invoices.models.utbms import UtbmsCode
from invoices.models.engagements import (
    EngagementCap,
    FixedFee,
    Milestone,
    Retainer,
    RetainerEntry,
)
from invoices.models.tax import TaxCode, TaxOverride

# isort: on

__all__ = [
    "MONEY",
    "RATE",
    "BillingCode",
    "Cap",
    "Category",
    "Classification",
    "ClassificationRule",
    "ClientPolicy",
    "CustomerMapping",
    "EntryAdjustment",
    "Firm",
    "Flag",
    "Invoice",
    "InvoiceEntry",
    "InvoiceEvent",
    "InvoiceLine",
    "InvoiceNumberSequence",
    "InvoicePush",
    "InvoiceStatus",
    "ItemMapping",
    "ManualLine",
    "ModelRequest",
    "ModelRun",
    "QuickBooksConnection",
    "Rate",
    "RateMultiplier",
    "TokenUsage",
    "UtbmsCode",
    "EngagementCap",
    "FixedFee",
    "Milestone",
    "Retainer",
    "RetainerEntry",
    "TaxCode",
    "TaxOverride",
]
