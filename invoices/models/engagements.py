"""Fixed fees, retainers and engagement caps (billing semantics section 13): the terms that
reach across invoice periods, and the retainer's ledger (the one piece of state they carry)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from invoices.models.amounts import MONEY
from invoices.models.invoice import Invoice
from timesheets.models import Client, Project


class FixedFee(models.Model):
    """A project billed as a fixed fee (13.1): its milestones bill the fee; its time bills
    nothing and is shown as no-charge detail (or one summary line when `show_time` is off)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="fixed_fee")
    fee = models.DecimalField(**MONEY, help_text="The whole fee; milestones in percent are of it.")
    show_time = models.BooleanField(
        default=True, help_text="Show the time as no-charge detail lines, grouped as usual."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(fee__gte=0), name="fixed_fee_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.project}: fixed fee {self.fee}"


class Milestone(models.Model):
    """A part of a fixed fee (13.1): an amount, or a percent of the fee, due on a date; billed
    once, on the first invoice approved after it is due (`billed_on`; a void releases it)."""

    fixed_fee = models.ForeignKey(FixedFee, on_delete=models.CASCADE, related_name="milestones")
    name = models.CharField(max_length=200)
    amount = models.DecimalField(**MONEY, null=True, blank=True)
    percent = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    due_on = models.DateField(null=True, blank=True, help_text="Not billed until it has a date.")
    billed_on = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="milestones"
    )

    class Meta:
        ordering = ["fixed_fee", "due_on", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__isnull=True) ^ Q(percent__isnull=True),
                name="milestone_amount_or_percent",
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="milestone_amount_ok"
            ),
            models.CheckConstraint(
                condition=Q(percent__isnull=True) | Q(percent__gt=0, percent__lte=100),
                name="milestone_percent_ok",
            ),
            models.UniqueConstraint("fixed_fee", "name", name="milestone_name_once"),
        ]

    def __str__(self) -> str:
        share = f"{self.percent}%" if self.percent is not None else str(self.amount)
        return f"{self.name} ({share})"


class Retainer(models.Model):
    """A client's retainer (13.2): a prepaid balance (top-ups in the ledger) drawn down by each
    invoice; with `monthly_amount`, an allowance per month, carried over or not."""

    client = models.OneToOneField(Client, on_delete=models.CASCADE, related_name="retainer")
    monthly_amount = models.DecimalField(**MONEY, null=True, blank=True)
    rollover = models.BooleanField(
        default=True, help_text="Monthly: carry what the month leaves unused to the next."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_amount__isnull=True) | Q(monthly_amount__gt=0),
                name="retainer_monthly_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client} retainer"


class RetainerEntry(models.Model):
    """One movement of a client's retainer balance (13.2). Rows tied to an invoice are written
    by approval and void, in their transaction, at most once per kind and invoice."""

    class Kind(models.TextChoices):
        TOP_UP = "top_up", "Top-up"
        ALLOWANCE = "allowance", "Monthly allowance"
        DRAWDOWN = "drawdown", "Drawdown"
        EXPIRY = "expiry", "Expired (no rollover)"
        REVERSAL = "reversal", "Reversal (invoice voided)"

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="retainer_entries")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount = models.DecimalField(**MONEY, help_text="Signed: a drawdown is negative.")
    on_date = models.DateField()
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="retainer_entries"
    )
    note = models.CharField(max_length=300, blank=True)
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    made_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["client", "on_date", "id"]
        verbose_name_plural = "retainer ledger"
        constraints = [
            models.UniqueConstraint(
                "invoice",
                "kind",
                condition=Q(invoice__isnull=False),
                name="retainer_once_per_invoice",
            ),
            models.CheckConstraint(
                condition=~Q(kind="top_up") | Q(amount__gt=0, invoice__isnull=True),
                name="retainer_top_up_positive",
            ),
            models.CheckConstraint(
                condition=Q(kind="top_up") | Q(invoice__isnull=False),
                name="retainer_invoice_rows_have_invoice",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.get_kind_display()} {self.amount}"


class EngagementCap(models.Model):
    """A budget or not-to-exceed cap over several periods (13.3), hours or amount (or both),
    for one project from `starts_on` to `ends_on`."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="engagement_caps")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="engagement_caps")
    hours = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    amount = models.DecimalField(**MONEY, null=True, blank=True)
    starts_on = models.DateField()
    ends_on = models.DateField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(hours__isnull=False) | Q(amount__isnull=False),
                name="engagement_cap_has_a_limit",
            ),
            models.CheckConstraint(
                condition=Q(starts_on__lte=models.F("ends_on")), name="engagement_cap_window"
            ),
            models.CheckConstraint(
                condition=(Q(hours__isnull=True) | Q(hours__gt=0))
                & (Q(amount__isnull=True) | Q(amount__gte=0)),
                name="engagement_cap_positive",
            ),
        ]

    def __str__(self) -> str:
        limits = " / ".join(
            part
            for part in (
                f"{self.hours} h" if self.hours is not None else "",
                str(self.amount) if self.amount is not None else "",
            )
            if part
        )
        return f"{self.project} <= {limits} ({self.starts_on}..{self.ends_on})"
