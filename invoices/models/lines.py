"""An invoice's lines and each entry's place on it (billed, no charge, pending, held)."""

from django.db import models
from django.db.models import Q

from invoices.models.amounts import MONEY, RATE
from invoices.models.invoice import Invoice
from invoices.models.policy import Category
from timesheets.models import Person, Project, TimeEntry


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        TIME = "time", "Time"
        NO_CHARGE = "no_charge", "No charge"
        CAP = "cap", "Not-to-exceed adjustment"
        DISCOUNT = "discount", "Discount"
        FIXED_FEE = "fixed_fee", "Fixed fee"
        EXPENSE = "expense", "Expense / disbursement"
        CREDIT = "credit", "Credit"
        # Section 13.2: what a retainer pays of the invoice (negative).
        DRAWDOWN = "drawdown", "Retainer drawdown"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.TextField()
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    billing_code = models.CharField(max_length=20, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    quantity = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    unit_price = models.DecimalField(**RATE, default=0)
    amount = models.DecimalField(**MONEY)
    first_date = models.DateField(null=True, blank=True)
    # Billing semantics 12: the line's tax code (its name, as drafted), its taxable base after
    # the caps' and discount's shares, and its tax when the firm rounds tax per line.
    tax_code = models.CharField(max_length=60, blank=True)
    tax_base = models.DecimalField(**MONEY, null=True, blank=True)
    tax_amount = models.DecimalField(**MONEY, null=True, blank=True)
    # Why this line is this amount, in plain data: rate row and level, multiplier, rounding,
    # classification sources, cap (section 6).
    derivation = models.JSONField(default=dict)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint("invoice", "position", name="line_position_unique"),
            models.CheckConstraint(
                condition=~Q(kind="no_charge") | Q(amount=0, unit_price=0),
                name="no_charge_line_is_free",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description[:60]} {self.amount}"


class InvoiceEntry(models.Model):
    """An entry's place on an invoice: on a line (billed or no charge) or pending review."""

    class State(models.TextChoices):
        BILLED = "billed", "Billed"
        NO_CHARGE = "no_charge", "No charge"
        PENDING = "pending", "Pending review"
        # Section 10.2: invoiced or not approved in the tracker; never blocks approval, and
        # leaves the invoice when it is approved (the entry is then unbilled, with its reason).
        HELD = "held", "Held"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="entry_links")
    line = models.ForeignKey(
        InvoiceLine, null=True, blank=True, on_delete=models.CASCADE, related_name="entry_links"
    )
    entry = models.ForeignKey(TimeEntry, on_delete=models.PROTECT, related_name="invoice_links")
    state = models.CharField(max_length=10, choices=State.choices)
    pending_reason = models.CharField(max_length=300, blank=True)
    # Mirrors "invoice is not void"; set false by the void service in the same transaction.
    is_live = models.BooleanField(default=True)
    raw_seconds = models.PositiveIntegerField()
    billed_seconds = models.PositiveIntegerField(default=0)
    # The entry's content hash when drafted: approval refuses a draft whose entries changed.
    content_hash = models.CharField(max_length=64, blank=True)
    # Section 10.1: set for late time, the first day of the approved period the entry is from.
    late_from = models.DateField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "invoice entries"
        constraints = [
            # Section 8: an entry is on at most one invoice that is not void. This index is the
            # guarantee; Python checks are only for friendlier messages.
            models.UniqueConstraint(
                "entry", condition=Q(is_live=True), name="entry_on_one_live_invoice"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["pending", "held"], line__isnull=True)
                | (~Q(state__in=["pending", "held"]) & Q(line__isnull=False)),
                name="entry_pending_xor_on_line",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} on {self.invoice_id} ({self.state})"
