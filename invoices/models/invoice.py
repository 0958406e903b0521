"""The invoice: its status, flags, totals and the policy snapshot that priced it."""

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q

from invoices.models.amounts import MONEY
from timesheets.models import Client, Project


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved"
    VOID = "void", "Void"


class Flag(models.TextChoices):
    CAP_APPLIED = "cap_applied", "Not-to-exceed cap applied"
    ZERO_TOTAL = "zero_total", "Zero total with billable entries"
    PENDING = "pending", "Entries pending review"
    SOURCE_CHANGED = "source_changed", "Source changed after approval"
    STALE = "stale", "Entries changed since drafted: rebuild"
    QBO_MISMATCH = "qbo_mismatch", "QuickBooks total differs"
    LATE_TIME = "late_time", "Late time from an approved period"
    HELD = "held", "Entries held (invoiced or not approved in the tracker)"


class Invoice(models.Model):
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="invoices")
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoices",
        help_text="Set when the client is invoiced per project.",
    )
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(
        max_length=10, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    # Assigned at approval (billing semantics 10.3); a draft has none ("draft #id").
    number = models.CharField(max_length=40, null=True, blank=True, unique=True, editable=False)
    currency = models.CharField(max_length=3)
    issue_date = models.DateField()
    due_date = models.DateField()
    subtotal = models.DecimalField(**MONEY, default=0)
    adjustments = models.DecimalField(**MONEY, default=0)
    discount = models.DecimalField(**MONEY, default=0)
    total = models.DecimalField(**MONEY, default=0)
    # Billing semantics 12.5: the tax on top of `total` (the amount due is total + tax_total)
    # and the summary per code and rate that the printable invoice shows.
    tax_total = models.DecimalField(**MONEY, default=0)
    tax_summary = models.JSONField(default=list, blank=True)
    flags = ArrayField(
        models.CharField(max_length=20, choices=Flag.choices), default=list, blank=True
    )
    # The policy that priced this draft, as it was: editing a rule never silently changes an
    # existing invoice, and a reviewer can see what applied.
    policy_snapshot = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    drafted_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-period_start", "client__name", "id"]
        permissions = [
            ("approve_invoice", "Can approve invoices"),
            ("void_invoice", "Can void invoices"),
        ]
        constraints = [
            # Drafting twice returns the same draft: one live invoice per client (and project,
            # when invoiced per project) and period.
            models.UniqueConstraint(
                "client",
                "project",
                "period_start",
                "period_end",
                condition=~Q(status="void"),
                nulls_distinct=False,
                name="one_live_invoice_per_client_period",
            ),
            models.CheckConstraint(
                condition=Q(period_start__lte=F("period_end")), name="invoice_period_ordered"
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="invoice_total_not_negative"),
            models.CheckConstraint(
                # A void keeps the number it had: none if it was voided as a draft.
                condition=Q(status="draft", number__isnull=True)
                | Q(status="approved", number__isnull=False)
                | Q(status="void"),
                name="invoice_numbered_once_approved",
            ),
            models.CheckConstraint(
                condition=Q(total=F("subtotal") + F("adjustments") + F("discount")),
                name="invoice_total_adds_up",
            ),
        ]
        indexes = [models.Index(fields=["period_start", "period_end", "status"])]

    def __str__(self) -> str:
        scope = f"{self.client} / {self.project}" if self.project_id else str(self.client)
        return f"{self.label} {scope} {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"

    @property
    def label(self) -> str:
        """The invoice number, or "draft #id" before approval gives it one."""
        if self.number:
            return self.number
        return f"draft #{self.pk}" if self.pk else "new draft"

    @property
    def total_with_tax(self) -> Decimal:
        """The amount due (billing semantics 12.5)."""
        return self.total + self.tax_total

    @property
    def is_frozen(self) -> bool:
        return self.status != InvoiceStatus.DRAFT
