"""Tax codes and their overrides (billing semantics section 12).

A client's default code is `ClientPolicy.tax_code`; the firm's per-line or per-invoice setting is
`Firm.tax_calculation`. What a draft was taxed with is stored on the invoice and its lines as
plain values (code name, base, tax), so editing a code never silently changes a draft.
"""

from django.db import models
from django.db.models import Q

from invoices.core.tax import MANUAL_KINDS
from invoices.models.policy import Category


class TaxCode(models.Model):
    name = models.CharField(max_length=60, unique=True, help_text="e.g. VAT 19%, GST, CA sales.")
    rate = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="In percent (19 for 19%). Empty: per QuickBooks (its automated sales tax "
        "computes it; billables shows no figure of its own).",
    )
    compound = models.BooleanField(
        default=False,
        help_text="Charged on the base plus the taxes charged before it on the line (with "
        "'applies after').",
    )
    applies_after = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Another code charged first on the same line (e.g. QST after GST).",
    )
    quickbooks_id = models.CharField(
        max_length=40,
        blank=True,
        help_text="The QuickBooks TaxCode Id this code maps to (TaxCodeRef of each line).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rate__isnull=True) | Q(rate__gte=0, rate__lte=100),
                name="tax_rate_0_to_100",
            ),
            models.CheckConstraint(
                condition=~Q(applies_after=models.F("id")), name="tax_code_not_after_itself"
            ),
        ]

    def __str__(self) -> str:
        rate = "per QuickBooks" if self.rate is None else f"{self.rate.normalize():f}%"
        return f"{self.name} ({rate})"


class TaxOverride(models.Model):
    """The firm's code for a category's lines or a manual line kind's, over the client's
    default; no code means the lines are exempt."""

    category = models.OneToOneField(
        Category, null=True, blank=True, on_delete=models.CASCADE, related_name="tax_override"
    )
    line_kind = models.CharField(
        max_length=10,
        blank=True,
        choices=[(k, k.replace("_", " ")) for k in sorted(MANUAL_KINDS)],
    )
    tax_code = models.ForeignKey(
        TaxCode,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="overrides",
        help_text="Empty: exempt.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(category__isnull=False) & Q(line_kind=""))
                | (Q(category__isnull=True) & ~Q(line_kind="")),
                name="tax_override_category_xor_kind",
            ),
            models.UniqueConstraint(
                "line_kind", condition=~Q(line_kind=""), name="tax_override_once_per_kind"
            ),
        ]

    def __str__(self) -> str:
        what = self.category.key if self.category else self.line_kind
        return f"{what} -> {self.tax_code.name if self.tax_code else 'exempt'}"
