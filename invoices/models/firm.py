"""The firm's own settings (one row): its name, currency, default rate, review-desk rules and
what its invoices print."""

from django.db import models
from django.db.models import Q

from invoices.models.amounts import RATE


class Firm(models.Model):
    """The firm's own settings: exactly one row (id = 1)."""

    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="USD")
    default_rate = models.DecimalField(
        **RATE, null=True, blank=True, help_text="Level 9 of the rate table; empty means none."
    )
    # Review desk (segregation of duties, reliability notes 3.2).
    approver_must_differ_from_corrector = models.BooleanField(
        default=False,
        help_text="Refuse approval by the person who last corrected an entry of the invoice.",
    )
    approvers_need_two_factor = models.BooleanField(
        default=False,
        help_text="Approve, void and send only from a login confirmed with a two-factor code.",
    )
    # Billing semantics 10.3: numbers are assigned at approval from a gapless per-year sequence.
    # What a client's invoice shows of the firm (printable invoice and PDF).
    address = models.TextField(blank=True, help_text="Postal address, as printed on invoices.")
    tax_id = models.CharField(max_length=50, blank=True, help_text="VAT / tax number.")
    logo_url = models.URLField(blank=True, help_text="An image shown at the top of invoices.")
    payment_instructions = models.TextField(
        blank=True, help_text="Printed under the total: bank details, how to pay."
    )
    # Billing semantics 12.4: where tax is rounded.
    tax_calculation = models.CharField(
        max_length=10,
        choices=[("invoice", "On the invoice, per tax code"), ("line", "Per line")],
        default="invoice",
        help_text="Tax rounded once per code on the invoice, or once per line.",
    )
    invoice_number_template = models.CharField(
        max_length=60,
        default="INV-{year}-{seq:04}",
        help_text="How approved invoices are numbered: {year} and {seq} (the year's sequence, "
        "restarting each year), e.g. INV-{year}-{seq:04} gives INV-2026-0001.",
    )

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="firm_singleton")]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def load(cls) -> "Firm":
        firm, _ = cls.objects.get_or_create(id=1, defaults={"name": "My firm"})
        return firm
