"""A reviewer's changes kept beside a draft (billing semantics 10.4): write-downs of an entry's
billed hours and manual lines; every rebuild includes them."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from invoices.models.amounts import RATE
from invoices.models.policy import Category
from timesheets.models import Client, Project, TimeEntry


class EntryAdjustment(models.Model):
    """A reviewer's write-down or write-up of one entry's billed hours (billing semantics
    10.4): it survives rebuilds and re-imports; a source change of the entry's hours after it
    flags the entry for review, the adjustment kept."""

    entry = models.OneToOneField(
        TimeEntry, on_delete=models.CASCADE, primary_key=True, related_name="adjustment"
    )
    billed_seconds = models.PositiveIntegerField(help_text="What the entry bills, after rounding.")
    # The entry's source seconds when the adjustment was made.
    source_seconds = models.PositiveIntegerField()
    reason = models.CharField(max_length=300)
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    made_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="adjustment_has_a_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id}: {self.billed_seconds} s ({self.reason[:40]})"


class ManualLine(models.Model):
    """A line a reviewer adds to a client's invoice of a period (section 10.4): a fixed fee, an
    expense or disbursement, a credit. Kept beside the draft, so every rebuild includes it."""

    class Kind(models.TextChoices):
        FIXED_FEE = "fixed_fee", "Fixed fee"
        EXPENSE = "expense", "Expense / disbursement"
        CREDIT = "credit", "Credit"

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="manual_lines")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    period_start = models.DateField()
    period_end = models.DateField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.TextField()
    quantity = models.DecimalField(max_digits=14, decimal_places=4, default=1)
    unit_price = models.DecimalField(**RATE)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    billing_code = models.CharField(max_length=20, blank=True)
    reason = models.CharField(max_length=300)
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    made_at = models.DateTimeField(auto_now=True)
    # The approved invoice it was billed on; then it is frozen with it.
    invoice = models.ForeignKey(
        "Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="manual_lines"
    )

    class Meta:
        ordering = ["period_start", "client__name", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="manual_line_has_a_reason"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="manual_line_quantity"),
            # A credit lowers the total; other kinds do not.
            models.CheckConstraint(
                condition=Q(kind="credit", unit_price__lte=0)
                | (~Q(kind="credit") & Q(unit_price__gte=0)),
                name="manual_line_sign_by_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.description[:40]}"
